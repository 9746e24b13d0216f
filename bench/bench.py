"""`make bench`: tus-minio, tusd v2.9.1 (S3 store) and MinIO direct, side by side in one run.

    python -m bench.bench [--scale F] [--rows tuspy,one,...] [--profile] [--workers N] [--threads N]

Starts its own MinIO (a temporary data folder), tus-minio under gunicorn as `make run` serves
it (`-c python:tus_server.ops.gunicorn_conf`) and tusd with its S3 store on the same MinIO, runs
every row (bench/workloads.py) against each in turn and prints one Markdown table, with the
targets of issue 12 as met / not met (also written to bench-results/latest.md).

`--scale F` multiplies every size (1 GiB, 64 MiB, 10,000 listed uploads, the slow-clients
row's 2,000 trickling PATCHes and 1,000 half-sent headers) and the creation-rate duration:
0.05 is a quick run. MB/s is 10^6 bytes per second. CPU s/GiB is the
user + system CPU time of the server's processes (tus-minio: gunicorn master + workers; tusd:
its process) over the row, per GiB moved; MinIO's own CPU is in the notes. `--profile` runs
py-spy against the app during an extra one-PATCH upload and download and writes "top"
summaries to bench-results/ (also during extra 32-concurrent and creation passes).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

import psutil
from minio import Minio

from bench.bodies import GIB, MIB, Blocks
from bench.meters import PySpy, tree_rss
from bench.servers import TUSD_BUCKET, TUSD_VERSION, App, Tusd, make_bucket
from bench.workloads import DIRECT_BUCKET, ROWS, Context, Row
from tests.minio_process import ACCESS_KEY, ROOT, SECRET_KEY, MinioProcess

RESULTS = ROOT / "bench-results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


ONCE = {"listing", "leak_check", "slow_clients"}  # slow, and not a rate: not repeated


def median_row(runs: list[Row]) -> Row:
    """The first run's row with each server's result replaced by its median run's (by value);
    a failed check in any run stays failed."""
    row = runs[0]
    if len(runs) == 1:
        return row
    for other in ("direct", "tusd"):  # ratios within each run, then their median
        ratios = sorted(r for r in (_ratio(run, "ours", other) for run in runs) if r is not None)
        if ratios:
            row.ratios[other] = ratios[(len(ratios) - 1) // 2]
    for name in list(row.results):
        results = sorted((run.results[name] for run in runs if name in run.results),
                         key=lambda r: r.value)
        chosen = results[(len(results) - 1) // 2]
        if any(r.ok is False for r in results):
            chosen.ok = False
        chosen.check += f"; median of {len(results)}: " + ", ".join(
            f"{r.value:.0f}" for r in results)
        row.results[name] = chosen
    return row


# ------------------------------------------------------------------------------ the table
def _value(row: Row, name: str) -> str:
    result = row.results.get(name)
    if result is None:
        return ""
    digits = 1 if row.unit == "ms" and result.value < 10 else 0
    return f"{result.value:.{digits}f} {row.unit}"


def _ratio(row: Row, a: str, b: str) -> Optional[float]:
    if a == "ours" and b in row.ratios:
        return row.ratios[b]
    ra, rb = row.results.get(a), row.results.get(b)
    if ra is None or rb is None or row.unit not in ("MB/s", "/s") or not rb.value:
        return None
    return ra.value / rb.value


def _fmt_ratio(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}x"


def _pair(row: Row, attr: str, fmt) -> str:
    values = []
    for name in ("ours", "tusd"):
        result = row.results.get(name)
        value = getattr(result, attr) if result is not None else None
        values.append("-" if value is None else fmt(value))
    return " / ".join(values)


def _checks(row: Row) -> str:
    marks = []
    for name in ("ours", "tusd", "direct"):
        result = row.results.get(name)
        if result is None or (result.ok is None and not result.check):
            continue
        mark = {True: "ok", False: "**FAILED**", None: "n/a"}[result.ok]
        marks.append(f"{name} {mark}" + (f" ({result.check})" if result.check else ""))
    return "; ".join(marks)


def markdown(rows: list[Row]) -> str:
    lines = ["| row | tus-minio | tusd | MinIO direct | vs direct | vs tusd | CPU s/GiB "
             "ours / tusd | peak RSS MiB ours / tusd | checks | notes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        cpu = _pair(row, "cpu_per_gib", lambda v: f"{v:.2f}") if row.unit == "MB/s" else ""
        rss = _pair(row, "rss", lambda v: f"{v / MIB:.0f}") if row.unit != "ms" else ""
        minio = [f"{name} {row.results[name].minio_cpu:.1f}" for name in ("ours", "tusd", "direct")
                 if name in row.results and row.results[name].minio_cpu is not None]
        note = row.note + (("; " if row.note else "") + "MinIO CPU s: " + ", ".join(minio)
                           if minio and row.unit == "MB/s" else "")
        lines.append(f"| {row.what} | {_value(row, 'ours')} | {_value(row, 'tusd')} | "
                     f"{_value(row, 'direct')} | {_fmt_ratio(_ratio(row, 'ours', 'direct'))} | "
                     f"{_fmt_ratio(_ratio(row, 'ours', 'tusd'))} | {cpu} | {rss} | "
                     f"{_checks(row)} | {note} |")
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[tuple[str, Optional[bool], str]]:
    """Issue 12's targets: (target, met (None: not measured), the measured value)."""
    by = {row.key: row for row in rows}
    out = []

    def ratio_target(key, a, b, floor, text):
        row = by.get(key)
        value = _ratio(row, a, b) if row else None
        out.append((text, None if value is None else value >= floor, _fmt_ratio(value)))

    ratio_target("tuspy", "ours", "direct", 0.8, "5 MiB PATCHes >= 0.8x MinIO direct")
    ratio_target("one", "ours", "direct", 0.9, "one PATCH >= 0.9x MinIO direct")
    ratio_target("get", "ours", "direct", 0.9, "download >= 0.9x MinIO direct")
    ratio_target("tuspy", "ours", "tusd", 1.5, "5 MiB PATCHes >= 1.5x tusd")
    behind = [(row.what, _ratio(row, "ours", "tusd")) for row in rows
              if _ratio(row, "ours", "tusd") is not None]
    out.append(("ahead of tusd on every row", all(v > 1 for _, v in behind) if behind else None,
                ", ".join(f"{what}: {v:.2f}x" for what, v in behind if v <= 1) or "all ahead"))
    for key, ceiling, text in (("one", 1.2, "our CPU <= 1.2 s/GiB up (one PATCH)"),
                               ("get", 0.5, "our CPU <= 0.5 s/GiB down")):
        result = by[key].results.get("ours") if key in by else None
        value = result.cpu_per_gib if result else None
        out.append((text, None if value is None else value <= ceiling,
                    "" if value is None else f"{value:.2f} s/GiB"))
    leak = by.get("leak")
    result = leak.results.get("ours") if leak else None
    out.append(("RSS back within 20% after 100 uploads (leak check)",
                None if result is None else result.ok, result.check if result else ""))
    one = by.get("one")
    first = one.results.get("ours") if one else None
    if first and first.rss and first.rss_before:
        growth = first.rss / first.rss_before
        out.append(("RSS flat in file size (one-PATCH row: peak within 20% of the RSS before it)",
                    growth <= 1.2, f"{first.rss_before / MIB:.0f} -> {first.rss / MIB:.0f} MiB "
                                   f"({growth:.2f}x)"))
    else:
        out.append(("RSS flat in file size (one-PATCH row: peak within 20% of the RSS before it)",
                    None, ""))
    listing = by.get("list")
    if listing and "ours@100" in listing.results:
        value = listing.results["ours"].value / listing.results["ours@100"].value
        out.append(("listing page with 10,000 stored within 2x of with 100", value <= 2,
                    f"{value:.2f}x"))
    else:
        out.append(("listing page with 10,000 stored within 2x of with 100", None, ""))
    slow = by.get("slow")
    out.append(("slow clients: 10/10 fresh served within 1 s, every slow upload keeps its "
                "bytes, peak RSS < 1 GiB (issue 18)",
                slow.goals.get("ours") if slow else None,
                slow.results["ours"].check.split(", peak RSS")[0] if slow else ""))
    failed = [f"{row.key}/{name}" for row in rows for name, r in row.results.items()
              if r.ok is False]
    out.append(("every transfer's SHA-256 verified", not failed, ", ".join(failed) or "all"))
    return out


def targets_markdown(results) -> str:
    lines = ["| target | result | measured |", "| --- | --- | --- |"]
    for text, met, value in results:
        mark = {True: "met", False: "**not met**", None: "not measured"}[met]
        lines.append(f"| {text} | {mark} | {value} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / GIB:.0f} GiB RAM"


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.05: quick)")
    parser.add_argument("--rows", default="", help="comma-separated row keys: " +
                        ",".join(f.__name__ for f in ROWS) + " (default: all)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the app during an extra one-PATCH upload and download")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the transfer rows N times, interleaved; report each server's "
                             "median (the listing and leak rows run once)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: gunicorn_conf's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: gunicorn_conf's)")
    parser.add_argument("--tusd-part-size", type=int, help="tusd -s3-part-size (default: tusd's)")
    parser.add_argument("--tmpdir", default=os.environ.get("BENCH_TMPDIR"),
                        help="where MinIO's data and the test file go (default: system temp)")
    parser.add_argument("--output", default=str(RESULTS / "latest.md"))
    args = parser.parse_args(argv)

    scale = args.scale
    size = max(MIB, int(GIB * scale) // MIB * MIB)
    each = max(MIB, int(64 * MIB * scale) // MIB * MIB)
    listing_count = 10_000 if scale >= 1 else max(100, int(10_000 * scale))
    wanted = {name.strip() for name in args.rows.split(",") if name.strip()}
    rows_to_run = [f for f in ROWS if not wanted or f.__name__ in wanted]

    workdir = Path(tempfile.mkdtemp(prefix="tus-bench-", dir=args.tmpdir))
    need = 3 * size + 2 * 32 * each + GIB // 2
    free = shutil.disk_usage(workdir).free
    if free < need:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"not enough disk space in {workdir.parent}: {free / GIB:.1f} GiB free, about "
              f"{need / GIB:.1f} GiB needed (use --scale or --tmpdir)", file=sys.stderr)
        return 2

    rows: list[Row] = []
    rss_start: dict[str, int] = {}
    rss_end: dict[str, int] = {}
    problems: list[str] = []
    minio = app = tusd = None
    extra_apps: list[App] = []
    started = time.time()
    load_before = os.getloadavg()
    try:
        log(f"working in {workdir} ({free / GIB:.0f} GiB free)")
        minio = MinioProcess(workdir / "minio").start()
        client = Minio(minio.endpoint, ACCESS_KEY, SECRET_KEY, secure=False)
        make_bucket(client, DIRECT_BUCKET)
        make_bucket(client, TUSD_BUCKET)
        app = App(minio, workdir, "bucket", args.workers, args.threads, label="bench")
        tusd = Tusd(minio, workdir, args.tusd_part_size)
        time.sleep(1)
        rss_start = {"tus-minio": tree_rss(app.pid), "tusd": tree_rss(tusd.pid)}

        def make_app(**kwargs) -> App:
            extra = App(minio, workdir, workers=args.workers, threads=args.threads, **kwargs)
            extra_apps.append(extra)
            return extra

        profiler = PySpy(app.pid, Path(args.output).parent) if args.profile else None
        ctx = Context(app=app, tusd=tusd, client=client, minio_pid=minio.proc.pid,
                      blocks=Blocks(), workdir=workdir, size=size, each=each,
                      seconds=max(2.0, 10 * scale), listing_count=listing_count,
                      trickles=max(20, int(2000 * scale)),
                      half_headers=max(10, int(1000 * scale)),
                      make_app=make_app,
                      profile=profiler)
        runs: dict[str, list[Row]] = {}
        for repetition in range(max(1, args.repeat)):
            ctx.urls.clear()
            for workload in rows_to_run:
                name = workload.__name__
                if repetition and name in ONCE:
                    continue
                if name == "download_row" and "digest" not in ctx.urls:
                    continue  # the download reads the one-PATCH uploads
                log(f"row {name}" + (f", run {repetition + 1}" if args.repeat > 1 else ""))
                ctx.profile = profiler if repetition == 0 else None
                try:
                    row = workload(ctx)
                except Exception as exc:
                    traceback.print_exc()
                    problems.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                    continue
                runs.setdefault(name, []).append(row)
                log(" | ".join(f"{key} {r.value:.1f}" for key, r in row.results.items()))
        rows = [median_row(runs[f.__name__]) for f in rows_to_run if f.__name__ in runs]
        rss_end = {"tus-minio": tree_rss(app.pid), "tusd": tree_rss(tusd.pid)}
    finally:
        for server in [app, tusd, *extra_apps]:
            if server is not None:
                server.stop()
        if minio is not None:
            minio.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()
    command = "make bench" + (f' BENCH_ARGS="{" ".join(argv)}"' if argv else "")
    header = (f"tus-minio benchmark, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
              f"`{command}` (scale {scale:g}), {time.time() - started:.0f}s\n\n"
              f"Machine: {machine()}; client, servers and one MinIO (single drive) on it; "
              f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after. "
              f"tus-minio: gunicorn with tus_server.ops.gunicorn_conf, "
              f"TUS_WORKER={os.environ.get('TUS_WORKER') or 'gevent'}"
              + (f", {args.workers} workers" if args.workers else "")
              + (f", {args.threads} threads" if args.threads else "")
              + f". tusd {TUSD_VERSION}: S3 store, part size "
              + (f"{args.tusd_part_size / MIB:g} MiB" if args.tusd_part_size else "50 MiB (default)")
              + ", content hashes on (default). Digests: tus-minio's Repr-Digest; tusd's and "
              "MinIO direct's by downloading and hashing. RSS over the whole run: "
              + ", ".join(f"{name} {rss_start[name] / MIB:.0f} MiB at start, "
                          f"{rss_end[name] / MIB:.0f} at the end" for name in rss_start)
              + (f". Transfer rows: median of {args.repeat} interleaved runs (ratios: median "
                 f"of each run's ratio)" if args.repeat > 1 else "") + ".\n")
    target_results = targets(rows)
    text = (header + "\n" + markdown(rows) + "\n\nTargets (issue 12):\n\n"
            + targets_markdown(target_results) + "\n")
    if problems:
        text += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
    print(text)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(f"written to {output}")
    failed = any(r.ok is False for row in rows for r in row.results.values())
    return 1 if problems or failed else 0


if __name__ == "__main__":
    sys.exit(main())
