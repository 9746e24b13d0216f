"""MinIO requests per tus request, counted at every connection pool of the store.

    .venv/bin/python -m bench.round_trips            # the table
    .venv/bin/python -m bench.round_trips --paths    # ...and each request's method and path

Starts its own MinIO and the app in this process (bucket layout, 5 MiB chunks) and prints, per
kind of tus request, how many requests the store sent to MinIO and which.
"""
from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.helpers import ThreadedServer, create_url, head, metadata, patch
from tests.minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess
from tests.request_counter import MinioRequests
from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.minio_backend import MinioStore


def main() -> None:
    minio = MinioProcess(Path(tempfile.mkdtemp(prefix="tus-round-trips-"))).start()
    try:
        settings = Settings(minio_endpoint=minio.endpoint, minio_access_key=ACCESS_KEY,
                            minio_secret_key=SECRET_KEY, cleanup_interval=0)
        store = MinioStore(settings)
        server = ThreadedServer(create_app(settings, store))
        counter = MinioRequests(store)

        def measure(label: str, call) -> None:
            first = len(counter.trail)
            status = call().status_code
            diff = collections.Counter(line.split()[0] for line in counter.since(first))
            print(f"| {label} | {status} | {sum(diff.values())} | "
                  + ", ".join(f"{n} {m}" for m, n in sorted(diff.items())) + " |")
            if "--paths" in sys.argv[1:] and counter.since(first):
                print("\n".join(f"|   | | | `{line[:110]}` |" for line in counter.since(first)))

        size, mib = settings.chunk_size, 2 ** 20
        data = os.urandom(4 * size)
        url = create_url(server.url, len(data), metadata(filename="x.bin"))
        print("| tus request | status | MinIO requests | which |\n| --- | --- | ---: | --- |")
        measure("first PATCH of 5 MiB (takes the lock)", lambda: patch(url, 0, data[:size]))
        measure("next PATCH of 5 MiB (lock kept)", lambda: patch(url, size, data[size:2 * size]))
        measure("PATCH of 1 MiB inside a chunk (lock kept)",
                lambda: patch(url, 2 * size, data[2 * size:2 * size + mib]))
        measure("HEAD (lock kept: answered from its state)", lambda: head(url))
        measure(f"after {settings.lock_keep:g} s idle, the kept lock's release "
                "(no tus request)", lambda: _idle(settings.lock_keep + 0.5))
        measure("HEAD (nothing kept)", lambda: head(url))
        measure("PATCH of the last 14 MiB (3 chunks, finishes)",
                lambda: patch(url, 2 * size + mib, data[2 * size + mib:]))
        measure("GET of the 20 MiB file (4 chunks)", lambda: requests.get(url))
        measure("POST (creation)", lambda: requests.post(
            server.url + "/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}))
        tiny_patches(server.url, counter)
        print("\nheartbeats meanwhile (one process, not counted above): "
              + ", ".join(f"{n} {m}" for m, n in sorted(counter.background.items())))
        server.stop()
    finally:
        minio.stop()


class _Idle:
    status_code = "-"


def _idle(seconds: float) -> _Idle:
    time.sleep(seconds)
    return _Idle()


def tiny_patches(base_url: str, counter: MinioRequests) -> None:
    """The audit's write amplification figure: 40 one-byte PATCHes after 4 MiB (the upload is
    one byte longer, so that no PATCH finishes it)."""
    data = os.urandom(4 * 2**20 + 40)
    url = create_url(base_url, len(data) + 1, metadata(filename="tiny.bin"))
    assert patch(url, 0, data[:4 * 2**20]).status_code == 204
    before_bytes, first = sum(counter.sent.values()), len(counter.trail)
    for offset in range(4 * 2**20, len(data)):
        assert patch(url, offset, data[offset:offset + 1]).status_code == 204
    requests_made = len(counter.since(first))
    print(f"\n40 one-byte PATCHes after 4 MiB: {sum(counter.sent.values()) - before_bytes} bytes "
          f"sent to MinIO, {requests_made} MinIO requests ({requests_made / 40:.1f} per PATCH)")


if __name__ == "__main__":
    main()
