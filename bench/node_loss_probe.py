"""What a distributed MinIO answers to plain and to conditional PUTs right after a node dies.

The scale-out cluster of the tests (tests/cluster.py: four nodes, one drive each, EC:2, behind
nginx), no app: four writers PUT new keys through the balancer without pause, plain and with
`If-None-Match: *` (as the store writes every lock and state generation), of 1 MiB and of 100
bytes. In each round one node gets SIGKILL; the failed PUTs of the next ten seconds are
counted per writer, then the node is started again and the next round waits until every node
sees every drive (`Cluster.wait_for_writes`).

    python -m bench.node_loss_probe [rounds]

Measured on 2026-12-02 with `python -m bench.node_loss_probe 6`, every PUT sent once: plain
and conditional PUTs fail alike (in 2 of 6 kills, 80-113 plain and 12-21 conditional 1 MiB
PUTs answered `503 SlowDownWrite` for 7-9 s). The nginx log shows one surviving node refusing
most writes while the other two take them. (An earlier version sent plain PUTs through
minio-py, which retries a 503 five times on its own, and blamed conditional PUTs.) With the
store sending a refused PUT again (`objects.REFUSED_PAUSES`), 8 kills: no PUT failed; in one
kill a node refused 25 tries, each taken on a later try.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from minio.error import S3Error

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster import Cluster  # noqa: E402
from tus_server.storage.objects import Objects  # noqa: E402

BUCKET = "node-loss-probe"
WATCH = 10.0
# (name, conditional, size): as the store writes chunks and pieces, and lock generations.
WRITERS = (("plain-1MiB", False, 1 << 20), ("plain-100B", False, 100),
           ("if-none-match-1MiB", True, 1 << 20), ("if-none-match-100B", True, 100))


def main(rounds: int) -> int:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="node-loss-probe-")), instances=1)
    for node in cluster.nodes:
        node.start(wait=False)
    cluster.minio_lb.start()
    cluster.wait_for_quorum()
    objects = Objects(cluster.settings)
    try:
        cluster.client.make_bucket(BUCKET)
    except S3Error:
        pass
    failures: list[tuple[float, str, str]] = []
    stop = threading.Event()

    def writer(name: str, conditional: bool, size: int) -> None:
        data = os.urandom(size)
        serial = 0
        while not stop.is_set():
            serial += 1
            key = f"{name}/{serial}"
            began = time.monotonic()
            try:
                # Both kinds through the store's own PUT (no retries): minio-py's client
                # retries a 503 five times on its own and would hide the plain PUT's failures.
                objects.put_in_bucket(BUCKET, key, data, {"Content-Length": str(len(data))},
                                      if_none_match=conditional)
            except Exception as exc:  # noqa: BLE001 (every failure is what we count)
                code = getattr(exc, "code", None) or str(exc) or type(exc).__name__
                failures.append((began, name, str(code)))

    threads = [threading.Thread(target=writer, args=writer_args, daemon=True)
               for writer_args in WRITERS]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(rounds):
            cluster.wait_for_writes()
            time.sleep(1.0)
            node = cluster.nodes[round_ % len(cluster.nodes)]
            mark = cluster.minio_log_mark()
            killed = time.monotonic()
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.kill()
            time.sleep(WATCH)
            seen = [(round(at - killed, 1), name, code) for at, name, code in failures
                    if killed <= at < killed + WATCH]
            by_writer = {name: sum(1 for _, n, _ in seen if n == name) for name, _, _ in WRITERS}
            last = max((at for at, name, _ in seen if name.startswith("if-")), default=None)
            print(f"round {round_}: node {node.port} killed; PUTs failed in {WATCH:g} s: "
                  f"{by_writer}; last conditional failure at +{last} s; "
                  f"codes {sorted({code for _, _, code in seen})}; "
                  f"answered 503 by a node (sent again by the store): "
                  f"{refused_since(cluster, mark)}", flush=True)
            node.start(wait=False)
    finally:
        stop.set()
        for node in cluster.nodes:
            try:
                node.kill()
            except Exception:  # noqa: BLE001
                pass
        cluster.minio_lb.stop()
    return 0


def refused_since(cluster: Cluster, mark: int) -> int:
    """PUTs a node answered 503, from the MinIO balancer's access log after offset `mark`."""
    with open(cluster.minio_lb.run_dir / "nginx-minio-access.log", "rb") as log:
        log.seek(mark)
        return sum(1 for line in log.read().splitlines()
                   if b'"PUT ' in line and b'" 503 ' in line)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 and re.fullmatch(r"\d+", sys.argv[1])
                  else 4))
