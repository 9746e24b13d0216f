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
from urllib.parse import urlsplit
from pathlib import Path

import requests

from tests.helpers import ThreadedServer, create_url, head, metadata, patch
from tests.minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess
from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.instances import CLOCK_KEY
from tus_server.storage.instances import PREFIX as INSTANCES_PREFIX
from tus_server.storage.minio_backend import MinioStore


def main() -> None:
    minio = MinioProcess(Path(tempfile.mkdtemp(prefix="tus-round-trips-"))).start()
    try:
        settings = Settings(minio_endpoint=minio.endpoint, minio_access_key=ACCESS_KEY,
                            minio_secret_key=SECRET_KEY, cleanup_interval=0)
        store = MinioStore(settings)
        server = ThreadedServer(create_app(settings, store))
        counts: collections.Counter = collections.Counter()
        trail: list[str] = []  # "METHOD /path", in order
        sent = collections.Counter()  # body bytes sent to MinIO, by method
        beats = f"/{settings.system_bucket}/{INSTANCES_PREFIX}"
        background = collections.Counter()  # heartbeats: per process, not per request

        def counting(original):
            def urlopen(method, url, *args, **kwargs):
                path, query = urlsplit(url).path, urlsplit(url).query
                if path.startswith(beats) or path == f"/{settings.system_bucket}/{CLOCK_KEY}" \
                        or "prefix=" + INSTANCES_PREFIX.rstrip("/") in query:
                    background[method] += 1
                    return original(method, url, *args, **kwargs)
                counts[method] += 1
                trail.append(f"{method} {path}{'?' + query if query else ''}")
                body = kwargs.get("body")
                if body is not None and hasattr(body, "__len__"):
                    sent[method] += len(body)
                return original(method, url, *args, **kwargs)
            return urlopen

        # Every pool the store sends through: the main one, and the short-timeout ones the
        # lock, the heartbeat and the tidying use.
        for pool in (store.objects.http, store.objects.quick_http, store.objects.tidy_http):
            pool.urlopen = counting(pool.urlopen)

        def measure(label: str, call) -> None:
            before, first = dict(counts), len(trail)
            status = call().status_code
            diff = {k: v - before.get(k, 0) for k, v in counts.items() if v - before.get(k, 0)}
            print(f"| {label} | {status} | {sum(diff.values())} | "
                  + ", ".join(f"{n} {m}" for m, n in sorted(diff.items())) + " |")
            if "--paths" in sys.argv[1:]:
                print("\n".join(f"|   | | | `{line[:110]}` |" for line in trail[first:]))

        size = settings.chunk_size
        data = os.urandom(3 * size)
        url = create_url(server.url, len(data), metadata(filename="x.bin"))
        print("| tus request | status | MinIO requests | which |\n| --- | --- | ---: | --- |")
        measure("PATCH of 5 MiB at a chunk boundary", lambda: patch(url, 0, data[:size]))
        measure("PATCH of 1 MiB at a chunk boundary", lambda: patch(url, size, data[size:size + 2**20]))
        measure("PATCH of 1 MiB inside a chunk", lambda: patch(url, size + 2**20, data[size + 2**20:size + 2**21]))
        measure("HEAD", lambda: head(url))
        measure("PATCH of the last 8 MiB (2 chunks, finishes)", lambda: patch(url, size + 2**21, data[size + 2**21:]))
        measure("GET of the 15 MiB file (3 chunks)", lambda: requests.get(url))
        measure("POST (creation)", lambda: requests.post(
            server.url + "/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"}))
        tiny_patches(server.url, counts, sent)
        print(f"\nheartbeats meanwhile (one process, not counted above): "
              + ", ".join(f"{n} {m}" for m, n in sorted(background.items())))
        server.stop()
    finally:
        minio.stop()


def tiny_patches(base_url: str, counts: collections.Counter, sent: collections.Counter) -> None:
    """The audit's write amplification figure: 40 one-byte PATCHes after 4 MiB (the upload is
    one byte longer, so that no PATCH finishes it)."""
    data = os.urandom(4 * 2**20 + 40)
    url = create_url(base_url, len(data) + 1, metadata(filename="tiny.bin"))
    assert patch(url, 0, data[:4 * 2**20]).status_code == 204
    before_bytes, before_requests = sum(sent.values()), sum(counts.values())
    for offset in range(4 * 2**20, len(data)):
        assert patch(url, offset, data[offset:offset + 1]).status_code == 204
    requests_made = sum(counts.values()) - before_requests
    print(f"\n40 one-byte PATCHes after 4 MiB: {sum(sent.values()) - before_bytes} bytes "
          f"sent to MinIO, {requests_made} MinIO requests ({requests_made / 40:.1f} per PATCH)")


if __name__ == "__main__":
    main()
