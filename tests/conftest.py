"""Fixtures: one real MinIO per test session, app servers on loopback, clean storage per test.

The whole suite runs once per storage layout (`bucket`, `prefix`); set TUS_TEST_LAYOUTS to run
only some of them. The storage-level modules (SEAWEEDFS_MODULES) also run against a real
SeaweedFS in the prefix layout (test ids `[seaweedfs-prefix]`); TUS_TEST_BACKENDS=minio leaves
it out.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import requests

from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.minio_backend import MinioStore
from tus_server.storage import chores, kept_locks

from .helpers import ThreadedServer
from .minio_process import ACCESS_KEY, ROOT, SECRET_KEY, MinioProcess, free_port
from .seaweed_process import SeaweedProcess

LAYOUTS = [name.strip() for name in os.environ.get("TUS_TEST_LAYOUTS", "bucket,prefix").split(",")
           if name.strip()]
BACKENDS = [name.strip() for name in
            os.environ.get("TUS_TEST_BACKENDS", "minio,seaweedfs").split(",") if name.strip()]
# What storage does: fencing, hand-over, cuts, faults, reads. SeaweedFS needs the prefix layout
# (a bucket per upload exhausts its volumes; the server refuses that at start).
SEAWEEDFS_MODULES = {"test_integrity", "test_downloads", "test_faults"}


def storage_targets(module: str) -> list[tuple[str, str]]:
    """(S3 server, layout) pairs a test module runs against."""
    targets = [("minio", layout) for layout in LAYOUTS] if "minio" in BACKENDS else []
    if module in SEAWEEDFS_MODULES and "seaweedfs" in BACKENDS and "prefix" in LAYOUTS:
        targets.append(("seaweedfs", "prefix"))
    return targets


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        targets = storage_targets(metafunc.module.__name__.rsplit(".", 1)[-1])
        # MinIO's keep their old ids ([bucket], [prefix]), so -k filters still work.
        metafunc.parametrize("target", targets, indirect=True, scope="session",
                             ids=[layout if backend == "minio" else f"{backend}-{layout}"
                                  for backend, layout in targets])


@pytest.fixture(scope="session")
def minio(tmp_path_factory):
    server = MinioProcess(tmp_path_factory.mktemp("minio")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    if "seaweedfs" not in BACKENDS:
        pytest.skip("TUS_TEST_BACKENDS leaves SeaweedFS out")
    server = SeaweedProcess(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def target(request) -> tuple[str, str]:
    return request.param


@pytest.fixture(scope="session")
def layout(target) -> str:
    return target[1]


@pytest.fixture(scope="session")
def s3(target, request):
    """The S3 server under the test's store (MinIO or SeaweedFS): `endpoint`, `stop`, `start`."""
    return request.getfixturevalue(target[0])


@pytest.fixture
def settings(s3, layout) -> Settings:
    return Settings(
        minio_endpoint=s3.endpoint,
        minio_access_key=ACCESS_KEY,
        minio_secret_key=SECRET_KEY,
        cleanup_interval=0,
        layout=layout,
        bucket="tus-test-shared",
        retry_after=1,
        # Tests that look at the chunk objects right after a PATCH: on a loaded machine MinIO
        # can take longer than the default 3 s to answer a chunk PUT, and the chunk then gets
        # a stand-in (right, but not the layout those tests check). tests/test_stand_ins.py
        # and the scale-out cluster use short answer timeouts.
        chunk_answer_timeout=30.0,
    )


@pytest.fixture
def store(settings) -> MinioStore:
    return MinioStore(settings)


def _remove_everything(store: MinioStore) -> None:
    """Empty every upload bucket (and the system buckets' records). One bucket that cannot be
    removed yet (an object written into it while it was emptied) is emptied again, and never
    keeps the buckets after it: an upload left over is in the next test's listing."""
    from minio.deleteobjects import DeleteObject

    client = store.client
    for bucket in client.list_buckets():
        if bucket.name.startswith("tusminio"):  # system buckets: the usage records go too
            names = [o.object_name for prefix in ("usage/", "index/", "finals/")
                     for o in client.list_objects(bucket.name, prefix=prefix, recursive=True)]
            if names:
                list(client.remove_objects(bucket.name, [DeleteObject(n) for n in names]))
            continue
        if not bucket.name.startswith("tus-"):
            continue
        for attempt in range(3):
            names = [o.object_name for o in client.list_objects(bucket.name, recursive=True)]
            if names:
                list(client.remove_objects(bucket.name, [DeleteObject(n) for n in names]))
            # The shared bucket stays (emptied): on SeaweedFS every new bucket grows volumes.
            if bucket.name == store.settings.bucket:
                break
            try:
                client.remove_bucket(bucket.name)
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.2)


@pytest.fixture(autouse=True)
def clean_storage(request):
    """Remove every upload after each test that used the store (so tests stay independent).
    The background chores (a lock's `released` generation, garbage deletes) run first, so none
    of them writes into a bucket being removed."""
    store = request.getfixturevalue("store") if "store" in request.fixturenames else None
    yield
    if store is not None:
        try:
            kept_locks.release_all()  # before the wipe, so no release lands after it
            chores.drain(timeout=10.0)
            _remove_everything(store)
        except Exception:  # MinIO may have been stopped by the test itself
            pass


@dataclass
class LiveServer:
    url: str
    settings: Settings
    store: MinioStore
    _served: ThreadedServer

    def files_url(self) -> str:
        return self.url + "/files/"

    def stop(self) -> None:
        self._served.stop()
        sweeper = self._served.server.app.extensions.get("tus_sweeper")
        if sweeper is not None:
            sweeper.stop()


@pytest.fixture
def make_server(settings, store):
    """Start the app in this process on a free port: `make_server(max_size=100, ...)`."""
    servers: list[LiveServer] = []

    def start(**overrides) -> LiveServer:
        own_settings = settings.with_overrides(**overrides)
        own_store = store if not overrides else MinioStore(own_settings)
        served = ThreadedServer(create_app(own_settings, own_store))
        live = LiveServer(served.url, own_settings, own_store, served)
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.stop()


@pytest.fixture
def server(make_server) -> LiveServer:
    return make_server()


class GunicornServer:
    """The app under gunicorn in a subprocess, as `make run` serves it; can be SIGKILLed."""

    def __init__(self, settings: Settings, log_dir: Path, port: Optional[int] = None,
                 workers: int = 1, extra_env: Optional[dict] = None):
        self.settings = settings
        self.port = port or free_port()
        self.workers = workers
        self.log_path = log_dir / f"gunicorn-{self.port}.log"
        self.extra_env = extra_env or {}
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "MINIO_ENDPOINT": s.minio_endpoint, "MINIO_ACCESS_KEY": s.minio_access_key,
            "MINIO_SECRET_KEY": s.minio_secret_key, "TUS_CHUNK_SIZE": str(s.chunk_size),
            "TUS_LAYOUT": s.layout, "TUS_BUCKET": s.bucket, "TUS_CLEANUP_INTERVAL": "0",
            "TUS_EXPIRATION": str(s.expiration), "TUS_MAX_SIZE": str(s.max_size),
            "TUS_LOCK_LEASE": str(s.lock_lease), "TUS_RETRY_AFTER": str(s.retry_after),
            "TUS_HANDOVER_WAIT": str(s.handover_wait), "TUS_BODY_TIMEOUT": str(s.body_timeout),
            "TUS_LOCK_KEEP": str(s.lock_keep),
            "TUS_SHUTDOWN_TIMEOUT": str(s.shutdown_timeout),
            "TUS_CHUNK_ANSWER_TIMEOUT": str(s.chunk_answer_timeout),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> "GunicornServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app", "--bind",
             f"127.0.0.1:{self.port}", "-c", "python:tus_server.ops.gunicorn_conf",
             "--workers", str(self.workers)],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.proc.pid).children()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)
        self.proc = None

    def send_signal(self, sig: int) -> None:
        """`sig` to the master and its workers (SIGSTOP, SIGCONT), without waiting."""
        os.killpg(self.proc.pid, sig)


@pytest.fixture
def gunicorn_server(settings, store, tmp_path):
    started: list[GunicornServer] = []

    def start(port: Optional[int] = None, **overrides) -> GunicornServer:
        workers = overrides.pop("workers", 1)
        extra_env = overrides.pop("extra_env", None)
        server = GunicornServer(settings.with_overrides(**overrides), tmp_path, port, workers,
                                extra_env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
