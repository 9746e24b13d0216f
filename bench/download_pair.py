"""Downloads only, two source trees at the same moment: tus-minio from each tree (each its own
gunicorn, as `make run` serves it), tusd and MinIO direct, all on one fresh MinIO, the GETs
interleaved round by round, so a loaded machine weighs on every server alike. The client reads
and discards (no hashing), so the server's share of the two cores shows more. Besides MB/s and
the ratios, each tus-minio's worker CPU is split into user and system time, with its minor page
faults and context switches per GiB (/proc).

    python -m bench.download_pair 512 3 main=/work/main branch=.    # MiB, rounds, label=tree
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests
from minio import Minio

import bench.servers as servers
from bench.bodies import Blocks, GeneratedBody, create, patch
from bench.servers import TUSD_BUCKET, App, Tusd, make_bucket
from tests.minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess

MIB = 1 << 20


def counters(pid: int) -> tuple[float, float, int, int]:
    """User and system CPU seconds, minor faults and context switches of a process tree."""
    user = system = 0.0
    faults = switches = 0
    try:
        root = psutil.Process(pid)
        processes = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0, 0
    for process in processes:
        try:
            times = process.cpu_times()
            user, system = user + times.user, system + times.system
            stat = Path(f"/proc/{process.pid}/stat").read_text()
            faults += int(stat.rsplit(")", 1)[1].split()[7])  # minflt
            ctx = process.num_ctx_switches()
            switches += ctx.voluntary + ctx.involuntary
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return user, system, faults, switches


def fetch(url: str) -> int:
    size = 0
    with requests.get(url, stream=True, timeout=600) as response:
        response.raise_for_status()
        for piece in response.iter_content(MIB):
            size += len(piece)
    return size


def main() -> None:
    size, rounds = int(sys.argv[1]) * MIB, int(sys.argv[2])
    trees = dict(arg.split("=", 1) for arg in sys.argv[3:])
    work = Path(tempfile.mkdtemp(prefix="download-pair-"))
    minio = MinioProcess(work / "minio").start()
    running = {}
    try:
        client = Minio(minio.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        make_bucket(client, TUSD_BUCKET)
        make_bucket(client, "direct")
        for label, tree in trees.items():
            servers.ROOT = Path(tree).resolve()  # the tree gunicorn imports tus_server from
            running[label] = App(minio, work, label=label)
        running["tusd"] = Tusd(minio, work)
        blocks, urls = Blocks(), {}
        for label, server in running.items():
            urls[label] = create(server.files_url, size, "pair.bin")
            patch(urls[label], GeneratedBody(size, blocks, salt=21), size)
        client.put_object("direct", "pair.bin", GeneratedBody(size, blocks, salt=21), size)
        time.sleep(3)  # background digest passes
        results: dict[str, list[tuple]] = {label: [] for label in [*urls, "direct"]}
        gib = size / 2 ** 30
        for _ in range(rounds):
            for label, url in urls.items():
                before, started = counters(running[label].pid), time.perf_counter()
                assert fetch(url) == size, label
                wall, after = time.perf_counter() - started, counters(running[label].pid)
                per_gib = [(a - b) / gib for a, b in zip(after, before)]
                results[label].append((size / wall / 1e6, *per_gib))
            started = time.perf_counter()
            response = client.get_object("direct", "pair.bin")
            got = sum(len(piece) for piece in response.stream(MIB))
            response.close()
            response.release_conn()
            assert got == size
            results["direct"].append((size / (time.perf_counter() - started) / 1e6, 0, 0, 0, 0))
        print(f"downloads of {size // MIB} MiB, {rounds} rounds, "
              f"load average {os.getloadavg()[0]:.1f} at the end; medians:")
        for label, rows in results.items():
            def median(index):
                return statistics.median(row[index] for row in rows)
            vs_tusd = statistics.median(a[0] / b[0] for a, b in zip(rows, results["tusd"]))
            vs_direct = statistics.median(a[0] / b[0] for a, b in zip(rows, results["direct"]))
            line = f"{label:8s} {median(0):6.0f} MB/s  {vs_tusd:.2f}x tusd  {vs_direct:.2f}x direct"
            if label != "direct":
                line += (f"  CPU s/GiB user {median(1):.2f} + system {median(2):.2f}"
                         f"  minor faults/GiB {median(3):.0f}"
                         f"  context switches/GiB {median(4):.0f}")
            print(line, flush=True)
    finally:
        for server in running.values():
            server.stop()
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
