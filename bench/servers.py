"""The servers the bench runs side by side on one MinIO: tus-minio under gunicorn (as
`make run` serves it, `-c python:tus_server.ops.gunicorn_conf`), tusd v2.9.1 with its S3 store,
and MinIO itself (the "direct" rows talk to it with minio-py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

from tests.minio_process import ACCESS_KEY, ROOT, SECRET_KEY, MinioProcess, free_port

TUSD_VERSION = "v2.9.1"
TUSD_BUCKET = "tusd-bench"


def tusd_binary() -> str:
    """$TUSD_BIN, then .tools/bin/tusd (built by `make bench`), then PATH."""
    for candidate in (os.environ.get("TUSD_BIN"), str(ROOT / ".tools" / "bin" / "tusd"),
                      shutil.which("tusd")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no tusd binary: run `make bench` (it builds tusd into .tools/bin)")


def _wait_http(proc: subprocess.Popen, url: str, log_path: Path, method: str = "GET",
               ok=(200, 204), timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited; see {log_path}")
        try:
            if requests.request(method, url, headers={"Tus-Resumable": "1.0.0"},
                                timeout=1).status_code in ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[0]} did not start; see {log_path}")
        time.sleep(0.1)


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class TusServer:
    """What a workload needs of a tus server: its creation URL and the pid whose process
    tree is metered."""

    name = "?"
    proc: subprocess.Popen
    port: int
    base_path = "/files/"
    has_repr_digest = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def files_url(self) -> str:
        return self.url + self.base_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        _stop(self.proc)


class App(TusServer):
    """tus-minio under gunicorn with the project's gunicorn settings (`TUS_WORKER`, default
    gevent; `threads` matters for gthread only)."""

    name = "tus-minio"
    has_repr_digest = True

    def __init__(self, minio: MinioProcess, workdir: Path, layout: str = "bucket",
                 workers: Optional[int] = None, threads: Optional[int] = None, label: str = "",
                 extra_env: Optional[dict] = None):
        self.port = free_port()
        self.layout = layout
        label = label or layout
        env = dict(os.environ)
        env.update({
            "MINIO_ENDPOINT": minio.endpoint, "MINIO_ACCESS_KEY": ACCESS_KEY,
            "MINIO_SECRET_KEY": SECRET_KEY, "TUS_LAYOUT": layout, "TUS_BUCKET": f"tus-{label}",
            "TUS_CLEANUP_INTERVAL": "0", "HOST": "127.0.0.1", "PORT": str(self.port),
        })
        sizing = []  # none given: gunicorn_conf's (WORKERS, THREADS or its defaults)
        if workers:
            sizing += ["--workers", str(workers)]
        if threads:
            sizing += ["--threads", str(threads)]
        env.update(extra_env or {})
        self.log_path = workdir / f"gunicorn-{label}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app",
             "--bind", f"127.0.0.1:{self.port}", "-c", "python:tus_server.ops.gunicorn_conf",
             *sizing],
            cwd=ROOT, env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        _wait_http(self.proc, self.url + "/healthz", self.log_path)

    def worker_pids(self) -> list[int]:
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []


class Tusd(TusServer):
    """tusd with its S3 store on the bench's MinIO (path-style addressing, plain HTTP), its
    default part size (50 MiB) and part concurrency, an in-memory locker."""

    name = "tusd"

    def __init__(self, minio: MinioProcess, workdir: Path, part_size: Optional[int] = None):
        self.port = free_port()
        tmp = workdir / "tusd-tmp"  # where tusd buffers parts before it sends them
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_REGION="us-east-1", TMPDIR=str(tmp))
        args = [tusd_binary(), "-host", "127.0.0.1", "-port", str(self.port),
                "-base-path", self.base_path, "-s3-bucket", TUSD_BUCKET,
                "-s3-endpoint", f"http://{minio.endpoint}", "-s3-disable-ssl",
                "-show-startup-logs=false"]
        if part_size:
            args += ["-s3-part-size", str(part_size)]
        self.log_path = workdir / "tusd.log"
        self.proc = subprocess.Popen(args, env=env, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait_http(self.proc, self.files_url, self.log_path, method="OPTIONS")


def make_bucket(client, name: str) -> None:
    if not client.bucket_exists(name):
        client.make_bucket(name)
