"""The rows of `make bench`. Each runs the same workload against tus-minio ("ours"), tusd
("tusd") and MinIO through minio-py ("direct") in turn, metering the server's process tree
(gunicorn master + workers; tusd; for direct, MinIO) and checking every byte's SHA-256."""
from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import requests
from minio import Minio
from minio.commonconfig import ComposeSource
from tusclient import client as tus_client

from bench.bodies import (GIB, MIB, TUS, Blocks, GeneratedBody, HashingReader, create,
                          digest_of, download, patch, read_all, repr_digest_hex, terminate,
                          write_file)
from bench.meters import Meter, tree_rss
from bench.servers import App, TusServer, Tusd
from tests.slow_clients import SlowLoad, fresh_clients

DIRECT_BUCKET = "bench-direct"
# Seconds a fresh client of the slow-clients row may take before it counts as not served.
SLOW_FRESH_TIMEOUT = 10.0
# Seconds the slow clients are held open before the fresh clients come.
SLOW_SETTLE = 7.0
SERVERS = ("ours", "tusd", "direct")


@dataclass
class Result:
    """One server's numbers on one row."""
    value: float                  # MB/s, creations/s or ms (the row's unit)
    nbytes: int = 0               # bytes moved (for CPU s/GiB)
    cpu: Optional[float] = None   # CPU seconds of the server's processes over the row
    minio_cpu: Optional[float] = None
    rss: Optional[int] = None     # peak RSS of the server's processes
    rss_before: Optional[int] = None  # their RSS when the row started
    ok: Optional[bool] = None     # SHA-256 verified (None: not checked)
    check: str = ""               # how it was verified

    @property
    def cpu_per_gib(self) -> Optional[float]:
        if self.cpu is None or not self.nbytes:
            return None
        return self.cpu / (self.nbytes / GIB)


@dataclass
class Row:
    key: str
    what: str
    unit: str
    results: dict[str, Result] = field(default_factory=dict)
    note: str = ""
    higher_better: bool = True
    ratios: dict[str, float] = field(default_factory=dict)  # ours vs. key, when repeated
    goals: dict[str, bool] = field(default_factory=dict)  # a row's own target, by server


@dataclass
class Context:
    app: App
    tusd: Tusd
    client: Minio
    minio_pid: int
    blocks: Blocks
    workdir: Path
    size: int              # "1 GiB", scaled
    each: int              # "64 MiB", scaled
    seconds: float         # creation-rate duration
    listing_count: int     # "10,000", scaled
    trickles: int = 2000   # slow-clients row: trickling PATCHes, scaled
    half_headers: int = 1000  # and connections holding half-sent headers, scaled
    make_app: Callable[..., App] = None
    profile: Optional[Callable[[str], object]] = None   # row key -> context manager
    urls: dict[str, str] = field(default_factory=dict)  # one-PATCH uploads, for the download
    one_row: Optional[Row] = None

    def server(self, name: str) -> Optional[TusServer]:
        return {"ours": self.app, "tusd": self.tusd}.get(name)

    def meter(self, name: str) -> Meter:
        pid = self.minio_pid if name == "direct" else self.server(name).pid
        return Meter({"server": pid, "minio": self.minio_pid})


def mb_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6 if seconds > 0 else float("inf")


def human(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:g} GiB"
    return f"{size / MIB:g} MiB"


def _result(meter: Meter, nbytes: int, value: float, ok=None, check="") -> Result:
    return Result(value, nbytes, meter.cpu.get("server"), meter.cpu.get("minio"),
                  meter.server_peak_rss, meter.rss.baseline.get("server"), ok, check)


def _verify(ctx: Context, name: str, url: str, digest: str, size: int) -> tuple[bool, str]:
    """Ours by its Repr-Digest; tusd by downloading and hashing (outside the meter)."""
    if name == "ours":
        return repr_digest_hex(url) == digest, "Repr-Digest"
    return download(url) == (size, digest), "downloaded"


def _verify_direct(ctx: Context, key: str, digest: str, size: int) -> tuple[bool, str]:
    response = ctx.client.get_object(DIRECT_BUCKET, key)
    try:
        return read_all(response.stream(MIB)) == (size, digest), "downloaded"
    finally:
        response.close()
        response.release_conn()


PROFILE_SECONDS = 5.0  # a profiled pass repeats until py-spy has this long of samples


def _for_at_least(seconds: float, work: Callable[[], object]) -> int:
    deadline, runs = time.monotonic() + seconds, 0
    while not runs or time.monotonic() < deadline:
        work()
        runs += 1
    return runs


# ------------------------------------------------------------------------------ rows
def tuspy_patches(ctx: Context) -> Row:
    size = ctx.size
    row = Row("tuspy", f"upload {human(size)}, tuspy 5 MiB PATCHes", "MB/s",
              note="direct: put_object of the file, 5 MiB parts")
    path = ctx.workdir / "tuspy.bin"
    digest = write_file(path, size, ctx.blocks, salt=11)
    for name in ("ours", "tusd"):
        uploader = tus_client.TusClient(ctx.server(name).files_url).uploader(
            str(path), chunk_size=5 * MIB, metadata={"filename": "tuspy.bin"})
        with ctx.meter(name) as meter:
            uploader.upload()
        ok, check = _verify(ctx, name, uploader.url, digest, size)
        row.results[name] = _result(meter, size, mb_s(size, meter.wall), ok, check)
        terminate(uploader.url)
    with open(path, "rb") as raw, ctx.meter("direct") as meter:
        reader = HashingReader(raw)
        ctx.client.put_object(DIRECT_BUCKET, "tuspy.bin", reader, size, part_size=5 * MIB)
    ok = reader.hasher.hexdigest() == digest and _verify_direct(ctx, "tuspy.bin", digest, size)[0]
    row.results["direct"] = _result(meter, size, mb_s(size, meter.wall), ok, "downloaded")
    ctx.client.remove_object(DIRECT_BUCKET, "tuspy.bin")
    path.unlink()
    return row


def one_patch(ctx: Context) -> Row:
    size = ctx.size
    row = Row("one", f"upload {human(size)}, one PATCH", "MB/s",
              note="tusd and direct verified by the download row; direct: put_object")
    ctx.one_row = row
    for name in ("ours", "tusd"):
        url = create(ctx.server(name).files_url, size, "one.bin")
        body = GeneratedBody(size, ctx.blocks, salt=21)
        with ctx.meter(name) as meter:
            patch(url, body, size)
        if name == "ours":
            ok, check = _verify(ctx, name, url, body.hexdigest(), size)
        else:
            ok, check = None, "by download"
        row.results[name] = _result(meter, size, mb_s(size, meter.wall), ok, check)
        ctx.urls[name] = url
    body = GeneratedBody(size, ctx.blocks, salt=21)
    with ctx.meter("direct") as meter:
        ctx.client.put_object(DIRECT_BUCKET, "one.bin", body, size)
    row.results["direct"] = _result(meter, size, mb_s(size, meter.wall), None, "by download")
    ctx.urls["direct"] = "one.bin"
    ctx.urls["digest"] = body.hexdigest()
    if ctx.profile:  # extra, profiled passes: py-spy's sampling stays out of the numbers
        def profiled_upload():
            url = create(ctx.app.files_url, size, "profiled.bin")
            patch(url, GeneratedBody(size, ctx.blocks, salt=21), size)
            terminate(url)

        with ctx.profile("one-patch"):
            _for_at_least(PROFILE_SECONDS, profiled_upload)
    return row


def download_row(ctx: Context) -> Row:
    size, digest = ctx.size, ctx.urls["digest"]
    row = Row("get", f"download {human(size)}, GET", "MB/s", note="direct: get_object")
    for name in ("ours", "tusd"):
        with ctx.meter(name) as meter:
            got = download(ctx.urls[name])
        row.results[name] = _result(meter, size, mb_s(size, meter.wall), got == (size, digest),
                                    "hashed while read")
    with ctx.meter("direct") as meter:
        ok = _verify_direct(ctx, ctx.urls["direct"], digest, size)[0]
    row.results["direct"] = _result(meter, size, mb_s(size, meter.wall), ok, "hashed while read")
    for name in ("tusd", "direct"):  # the one-PATCH uploads were these bytes
        uploaded = ctx.one_row.results[name]
        uploaded.ok, uploaded.check = row.results[name].ok, "downloaded"
    if ctx.profile:
        with ctx.profile("download"):
            _for_at_least(PROFILE_SECONDS, lambda: download(ctx.urls["ours"]))
    for name in ("ours", "tusd"):
        terminate(ctx.urls[name])
    ctx.client.remove_object(DIRECT_BUCKET, ctx.urls["direct"])
    return row


def concatenation(ctx: Context, parts: int = 4) -> Row:
    size = ctx.size
    quarter = max(MIB, size // parts // MIB * MIB)
    sizes = [quarter] * (parts - 1) + [size - quarter * (parts - 1)]
    salts = [100 + 10_000 * i for i in range(parts)]
    digest = digest_of(list(zip(sizes, salts)), ctx.blocks)
    row = Row("concat", f"upload {human(size)}, {parts} parallel partials + concatenation",
              "MB/s", note="direct: 4 parallel put_object + compose_object")
    for name in ("ours", "tusd"):
        files_url = ctx.server(name).files_url

        def partial(i: int) -> str:
            url = create(files_url, sizes[i], f"part{i}.bin", concat="partial")
            patch(url, GeneratedBody(sizes[i], ctx.blocks, salts[i]), sizes[i])
            return url

        with ctx.meter(name) as meter, ThreadPoolExecutor(parts) as pool:
            urls = list(pool.map(partial, range(parts)))
            final = create(files_url, None, "whole.bin", concat="final;" + " ".join(urls))
        ok, check = _verify(ctx, name, final, digest, size)
        row.results[name] = _result(meter, size, mb_s(size, meter.wall), ok, check)
        for url in urls + [final]:
            terminate(url)

    def direct_part(i: int) -> None:
        ctx.client.put_object(DIRECT_BUCKET, f"part{i}", GeneratedBody(sizes[i], ctx.blocks,
                                                                       salts[i]), sizes[i])

    with ctx.meter("direct") as meter, ThreadPoolExecutor(parts) as pool:
        list(pool.map(direct_part, range(parts)))
        ctx.client.compose_object(DIRECT_BUCKET, "whole",
                                  [ComposeSource(DIRECT_BUCKET, f"part{i}") for i in range(parts)])
    ok, check = _verify_direct(ctx, "whole", digest, size)
    row.results["direct"] = _result(meter, size, mb_s(size, meter.wall), ok, check)
    for key in [f"part{i}" for i in range(parts)] + ["whole"]:
        ctx.client.remove_object(DIRECT_BUCKET, key)
    return row


def concurrent(ctx: Context, count: int = 32) -> Row:
    each = ctx.each
    row = Row("concurrent", f"{count} concurrent uploads of {human(each)}", "MB/s",
              note="aggregate")
    for name in ("ours", "tusd"):
        urls = [create(ctx.server(name).files_url, each, f"c{i}.bin") for i in range(count)]
        digests: dict[int, str] = {}
        errors: list[str] = []

        def one(i: int) -> None:
            body = GeneratedBody(each, ctx.blocks, salt=1000 * i)
            try:
                patch(urls[i], body, each)
                digests[i] = body.hexdigest()
            except Exception as exc:  # counted
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        with ctx.meter(name) as meter, ThreadPoolExecutor(count) as pool:
            list(pool.map(one, range(count)))
        ok = not errors and len(digests) == count and all(
            _verify(ctx, name, urls[i], digests[i], each)[0] for i in digests)
        row.results[name] = _result(meter, count * each, mb_s(count * each, meter.wall), ok,
                                    f"{len(digests)} checked, {len(errors)} errors")
        for url in urls:
            terminate(url)
    if ctx.profile:  # an extra, profiled pass (fresh uploads), out of the numbers
        def profiled_pass():
            urls = [create(ctx.app.files_url, each, f"p{i}.bin") for i in range(count)]
            with ThreadPoolExecutor(count) as pool:
                list(pool.map(lambda i: patch(urls[i], GeneratedBody(each, ctx.blocks, i), each),
                              range(count)))
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(terminate, urls))

        with ctx.profile("concurrent"):
            _for_at_least(PROFILE_SECONDS, profiled_pass)

    def direct(i: int) -> None:
        ctx.client.put_object(DIRECT_BUCKET, f"c{i}", GeneratedBody(each, ctx.blocks, 1000 * i),
                              each)

    with ctx.meter("direct") as meter, ThreadPoolExecutor(count) as pool:
        list(pool.map(direct, range(count)))
    ok = all(_verify_direct(ctx, f"c{i}", digest_of([(each, 1000 * i)], ctx.blocks), each)[0]
             for i in range(count))
    row.results["direct"] = _result(meter, count * each, mb_s(count * each, meter.wall), ok,
                                    f"{count} downloaded")
    for i in range(count):
        ctx.client.remove_object(DIRECT_BUCKET, f"c{i}")
    return row


def creations(ctx: Context, threads: int = 8) -> Row:
    row = Row("create", "uploads created per second", "/s",
              note=f"{threads} clients, {ctx.seconds:g}s each; direct: put_object of 0 bytes")
    for name in SERVERS:
        count, failed = [0] * threads, [0] * threads
        stop_at = time.monotonic() + ctx.seconds
        created: list[str] = []

        def loop(slot: int) -> None:
            session = requests.Session()
            while time.monotonic() < stop_at:
                try:
                    if name == "direct":
                        ctx.client.put_object(DIRECT_BUCKET, f"empty/{slot}-{count[slot]}",
                                              GeneratedBody(0, ctx.blocks), 0)
                    else:
                        created.append(create(ctx.server(name).files_url, 1, "", session))
                    count[slot] += 1
                except Exception:
                    failed[slot] += 1

        with ctx.meter(name) as meter, ThreadPoolExecutor(threads) as pool:
            list(pool.map(loop, range(threads)))
        result = _result(meter, 0, sum(count) / meter.wall, not sum(failed),
                         f"{sum(count)} created, {sum(failed)} errors")
        result.check += f", {1000 * (result.cpu or 0) / max(1, sum(count)):.1f} CPU ms each"
        row.results[name] = result
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(terminate, created))
    if ctx.profile:  # an extra, profiled pass, out of the numbers
        profiled: list[str] = []

        def creator(_) -> None:
            session = requests.Session()
            end = time.monotonic() + PROFILE_SECONDS
            while time.monotonic() < end:
                profiled.append(create(ctx.app.files_url, 1, "", session))

        with ctx.profile("create"), ThreadPoolExecutor(threads) as pool:
            list(pool.map(creator, range(threads)))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(terminate, profiled))
    for obj in ctx.client.list_objects(DIRECT_BUCKET, prefix="empty/", recursive=True):
        ctx.client.remove_object(DIRECT_BUCKET, obj.object_name)
    return row


def _fill(app: App, count: int) -> None:
    def one(_):
        session = requests.Session()
        return create(app.files_url, 1, "listed.bin", session)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def _page_ms(app: App, tries: int = 7) -> tuple[float, float]:
    times, cpu = [], 0.0
    for _ in range(tries):
        with Meter({"server": app.pid}, sample_rss=()) as meter:
            response = requests.get(app.url + "/files?per_page=100", headers=TUS, timeout=600)
            response.raise_for_status()
        times.append(meter.wall * 1000)
        cpu += meter.server_cpu
    return statistics.median(times), cpu / tries * 1000


def listing(ctx: Context) -> Row:
    """A listing page of 100 with `listing_count` uploads stored vs. with 100 (ours only,
    TUS_LAYOUT=prefix, one fresh app and bucket each)."""
    row = Row("list", "listing page of 100, GET /files?per_page=100", "ms", higher_better=False)
    measured = {}
    for count in (100, ctx.listing_count):
        app = ctx.make_app(layout="prefix", label=f"list{count}")
        try:
            started = time.perf_counter()
            _fill(app, count)
            fill = time.perf_counter() - started
            ms, cpu_ms = _page_ms(app)
            measured[count] = (ms, cpu_ms, fill)
        finally:
            app.stop()
    (small, small_cpu, _), (big, big_cpu, fill) = measured[100], measured[ctx.listing_count]
    row.results["ours"] = Result(big)
    row.results["ours@100"] = Result(small)
    row.note = (f"ours, TUS_LAYOUT=prefix: {big:.0f} ms with {ctx.listing_count:,} stored, "
                f"{small:.0f} ms with 100 ({big / small:.2f}x); app CPU {big_cpu:.0f} vs "
                f"{small_cpu:.0f} ms per page; median of 7; {ctx.listing_count:,} created in "
                f"{fill:.0f}s ({ctx.listing_count / fill:.0f}/s, 16 threads)")
    return row


def leak_check(ctx: Context, count: int = 100) -> Row:
    """RSS of the server before and after `count` uploads of `each` bytes, one after another."""
    each = ctx.each
    row = Row("leak", f"RSS after {count} uploads of {human(each)}", "MiB", higher_better=False)
    for name in ("ours", "tusd"):
        server = ctx.server(name)
        before = tree_rss(server.pid)
        verified = 0
        with ctx.meter(name) as meter:
            for i in range(count):
                url = create(server.files_url, each, "leak.bin")
                body = GeneratedBody(each, ctx.blocks, salt=7 * i)
                patch(url, body, each)  # checks the Upload-Offset it answers
                if name == "ours":  # the digest costs a GET; tusd's would cost a download
                    verified += repr_digest_hex(url) == body.hexdigest()
                terminate(url)
        time.sleep(1)
        after = tree_rss(server.pid)
        result = _result(meter, count * each, after / MIB, after <= before * 1.2,
                         f"{before / MIB:.0f} -> {after / MIB:.0f} MiB "
                         f"({after / before:.2f}x), {mb_s(count * each, meter.wall):.0f} MB/s, "
                         + (f"{verified}/{count} Repr-Digests right" if name == "ours"
                            else "Upload-Offset checked, digests not"))
        if name == "ours" and verified != count:
            result.ok = False
        row.results[name] = result
    return row


def slow_clients(ctx: Context, fresh: int = 10) -> Row:
    """Fresh clients beside `ctx.trickles` trickling PATCHes (100 bytes, then a byte every 2 s)
    and `ctx.half_headers` connections holding half-sent headers (issue 18), ours and tusd."""
    row = Row("slow", f"{fresh} fresh clients (create, PATCH 256 KiB, HEAD) beside "
              f"{ctx.trickles:,} trickling PATCHes + {ctx.half_headers:,} half-sent headers",
              "ms", higher_better=False, note="slowest fresh client; bytes kept: HEAD of "
              "every slow upload after it closed")
    for name in ("ours", "tusd"):
        load = SlowLoad(ctx.server(name).files_url, ctx.trickles, ctx.half_headers)
        started = time.monotonic()
        load.create_uploads()
        created = time.monotonic() - started
        with ctx.meter(name) as meter:
            try:
                load.open()
                # Past the start (the server takes 3,000 connections and opens 2,000 uploads'
                # locks) and before TUS_HEADER_TIMEOUT (10 s) lets the half-sent headers go.
                load.hold(SLOW_SETTLE)
                halves = load.halves_open()
                served = fresh_clients(ctx.server(name).files_url, fresh, SLOW_FRESH_TIMEOUT)
                cut = sum(t.cut for t in load.trickles)
            finally:
                load.close()
        offsets = load.offsets()
        kept = sum(str(sent) == got for sent, got in offsets.values())
        ok = [f for f in served if f.ok]
        within = sum(f.seconds <= 1.0 for f in ok)
        worst = max((f.seconds for f in served), default=0.0)
        errors = sorted({f.detail for f in served if not f.ok})
        lost = [got for got in offsets.values() if str(got[0]) != got[1]]
        row.results[name] = Result(
            worst * 1000, rss=meter.server_peak_rss, rss_before=meter.rss.baseline.get("server"),
            ok=kept == len(offsets),
            check=f"{within}/{fresh} served within 1 s ({len(ok)} at all), {kept}/"
                  f"{len(offsets)} kept their bytes, {cut} cut off, {halves} half-sent headers "
                  f"open at the fresh clients, peak RSS {meter.server_peak_rss / MIB:.0f} MiB, "
                  f"{len(offsets)} created in {created:.0f} s"
                  + (f"; errors: {'; '.join(errors)[:200]}" if errors else "")
                  + (f"; (sent, offset) of some that did not keep them: {lost[:4]}"
                     if lost else ""))
        row.goals[name] = within == fresh and kept == len(offsets) and \
            meter.server_peak_rss < GIB
    return row


ROWS = [tuspy_patches, one_patch, download_row, concatenation, concurrent, creations,
        listing, leak_check, slow_clients]
