"""What another owner's `GET /files` and `POST /files` cost with many uploads stored (issue 17,
item 5): before the per-owner usage records both read every stored upload's info.

    python -m bench.owner_scale [--uploads 1500] [--layout bucket|prefix] [--repeat 7]

Starts its own MinIO (a temporary data folder) and the app in this process with
`TUS_AUTH=jwt` and both per-owner quotas set, stores `--uploads` uploads of one owner (through a
second app without quotas, so that filling costs the same on any version), then times another
owner's listing and creation: the median of `--repeat` requests, with the MinIO GETs each one
made. Run it on two checkouts to compare (`PYTHONPATH=<checkout> python -m bench.owner_scale`).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import requests

from tests.helpers import ThreadedServer
from tests.minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess
from tus_server.app import create_app
from tus_server.config import Settings

SECRET = "bench-secret-" + "0123456789abcdef" * 3
TUS = {"Tus-Resumable": "1.0.0"}


def bearer(sub: str) -> dict:
    now = int(time.time())
    token = jwt.encode({"sub": sub, "scope": "upload download", "iat": now, "exp": now + 3600},
                       SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def timed(server, call) -> tuple[float, int]:
    """(seconds, MinIO GETs) of one request."""
    counts = server.app.config["TUS_STORE"].objects.http.counts
    gets = counts["GET"]
    started = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - started
    assert response.status_code in (200, 201), response.text
    return seconds, counts["GET"] - gets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=1500)
    parser.add_argument("--layout", default="bucket", choices=("bucket", "prefix"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        minio = MinioProcess(Path(data)).start()
        try:
            run(args, minio)
        finally:
            minio.stop()


def run(args, minio) -> None:
    base = Settings(minio_endpoint=minio.endpoint, minio_access_key=ACCESS_KEY,
                    minio_secret_key=SECRET_KEY, cleanup_interval=0, layout=args.layout,
                    bucket="tus-bench-shared", auth="jwt", jwt_secret=SECRET)
    filler = ThreadedServer(create_app(base))
    limited = ThreadedServer(create_app(base.with_overrides(
        max_uploads_per_owner=1_000_000, max_bytes_per_owner=1 << 40)))
    limited.app = limited.server.app
    for name in ("tus_server", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: requests.post(filler.url + "/files/", headers={
                **TUS, "Upload-Length": "5", **bearer("bulk")}).raise_for_status(),
                range(args.uploads)))
        print(f"stored {args.uploads} uploads of one owner in "
              f"{time.perf_counter() - started:.1f} s ({args.layout} layout)")
        other = bearer("alice")
        requests.post(limited.url + "/files/", headers={**TUS, "Upload-Length": "5", **other})
        rows = {
            "another owner's GET /files": lambda: requests.get(limited.url + "/files/",
                                                               headers=other),
            "another owner's POST /files": lambda: requests.post(
                limited.url + "/files/", headers={**TUS, "Upload-Length": "5", **other}),
        }
        print(f"\n| request ({args.uploads} uploads stored) | median s | MinIO GETs |")
        print("| --- | ---: | ---: |")
        for label, call in rows.items():
            results = [timed(limited, call) for _ in range(args.repeat)]
            print(f"| {label} | {statistics.median(r[0] for r in results):.3f} | "
                  f"{statistics.median(r[1] for r in results):.0f} |")
    finally:
        filler.stop()
        limited.stop()


if __name__ == "__main__":
    main()
