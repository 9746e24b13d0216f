"""The conditional-write probe (tus_server/storage/probe.py): MinIO and SeaweedFS pass it; the
same MinIO behind a proxy that drops If-Match and If-None-Match (an S3 server that ignores them)
fails it, and the server refuses to start, unless TUS_UNSAFE_S3=1 says otherwise, loudly.
SeaweedFS with a bucket per upload is refused too (it runs out of volumes)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.objects import Objects
from tus_server.storage.probe import PREFIX, StorageRefused, run_probe

from .conftest import GunicornServer
from .header_proxy import HeaderStrippingProxy
from .helpers import TUS
from .minio_process import ACCESS_KEY, ROOT, SECRET_KEY, free_port
from .test_refused_writes import RefusingProxy

REFUSAL = "fails the conditional-write check: If-None-Match: * on PUT is not enforced"
REASON = ("(a second create of one object succeeded, not 412); fencing of stalled writers needs "
          "If-Match and If-None-Match: * on PUT (docs/storage.md, Storage servers), or set "
          "TUS_UNSAFE_S3=1 for a single-process test setup")


@pytest.fixture(scope="module")
def ignoring_s3(minio):
    proxy = HeaderStrippingProxy(minio.endpoint, drop=("If-Match", "If-None-Match"))
    yield proxy
    proxy.close()


def _settings(endpoint: str, **overrides) -> Settings:
    return Settings(minio_endpoint=endpoint, minio_access_key=ACCESS_KEY,
                    minio_secret_key=SECRET_KEY, cleanup_interval=0, **overrides)


def _env(endpoint: str, **extra) -> dict:
    return {"PATH": "/usr/bin:/bin", "MINIO_ENDPOINT": endpoint, "MINIO_ACCESS_KEY": ACCESS_KEY,
            "MINIO_SECRET_KEY": SECRET_KEY, "TUS_CLEANUP_INTERVAL": "0", **extra}


def _probe_objects(objects: Objects, bucket: str) -> list[str]:
    return [o.object_name for o in objects.client.list_objects(bucket, prefix=PREFIX,
                                                                recursive=True)]


def test_minio_keeps_every_promise_and_the_probe_leaves_nothing(minio):
    settings = _settings(minio.endpoint)
    objects = Objects(settings)
    result = run_probe(objects, settings.system_bucket)
    assert result.missing is None
    assert result.server.startswith("MinIO")
    assert objects.http.counts["PUT"] >= 4 + 8  # the single PUTs and the racing ones
    assert _probe_objects(objects, settings.system_bucket) == []


def test_an_s3_that_ignores_preconditions_fails_the_probe(ignoring_s3):
    settings = _settings(ignoring_s3.endpoint)
    dropped = ignoring_s3.dropped
    result = run_probe(Objects(settings), settings.system_bucket)
    assert result.missing and result.missing.startswith("If-None-Match: * on PUT is not")
    assert ignoring_s3.dropped > dropped


def test_create_app_refuses_with_one_line_naming_guarantee_and_endpoint(ignoring_s3):
    with pytest.raises(StorageRefused) as refused:
        create_app(_settings(ignoring_s3.endpoint))
    line = str(refused.value)
    assert "\n" not in line
    assert f"S3 at {ignoring_s3.endpoint} {REFUSAL}" in line
    assert "TUS_UNSAFE_S3=1" in line


def test_gunicorn_exits_with_the_line_instead_of_serving(ignoring_s3):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app", "--bind", "127.0.0.1:0",
         "-c", "python:tus_server.ops.gunicorn_conf", "--workers", "1"],
        cwd=ROOT, env=_env(ignoring_s3.endpoint), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("tus-minio:")]
    assert ours == [f"tus-minio: S3 at {ignoring_s3.endpoint} {REFUSAL} {REASON}"]
    assert "App failed to load" in result.stderr


def test_serve_command_exits_with_the_line_before_gunicorn_starts(ignoring_s3):
    result = subprocess.run([sys.executable, "-m", "tus_server", "serve", "--port", "1"],
                            cwd=ROOT, env=_env(ignoring_s3.endpoint), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: S3 at {ignoring_s3.endpoint} {REFUSAL} {REASON}"]


def test_unsafe_override_starts_and_says_so_in_log_and_healthz(ignoring_s3, tmp_path):
    server = GunicornServer(_settings(ignoring_s3.endpoint), tmp_path,
                            extra_env={"TUS_UNSAFE_S3": "1"}).start()
    try:
        health = requests.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["conditional_writes"] == "not enforced"
        assert health.json()["warning"].startswith("TUS_UNSAFE_S3=1:")
        assert ignoring_s3.endpoint not in health.text  # the storage network stays private
    finally:
        server.kill()
    log = server.log_path.read_text()
    assert "WARNING tus_server.probe TUS_UNSAFE_S3=1:" in log
    assert f"S3 at {ignoring_s3.endpoint} {REFUSAL}" in log
    assert "running anyway (TUS_UNSAFE_S3=1)" in log


def test_healthz_says_the_guarantees_hold(minio):
    app = create_app(_settings(minio.endpoint))
    health = app.test_client().get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "conditional_writes": "enforced"}


def test_an_s3_that_answers_only_later_is_probed_before_the_first_upload(minio, caplog):
    port = free_port()
    app = create_app(_settings(f"127.0.0.1:{port}"))  # nothing listens there yet: it starts
    client = app.test_client()
    assert client.get("/healthz").get_json()["conditional_writes"] == "not checked yet"
    assert client.post("/files/", headers={**TUS, "Upload-Length": "5"}).status_code == 503

    proxy = HeaderStrippingProxy(minio.endpoint, drop=("If-Match", "If-None-Match"), port=port)
    try:
        created = client.post("/files/", headers={**TUS, "Upload-Length": "5"})
        assert created.status_code == 503 and "Retry-After" in created.headers
        assert created.text.strip() == "storage unavailable, retry later"
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json() == {"status": "storage refused",
                                     "conditional_writes": "not enforced"}
    finally:
        proxy.close()
    assert any(record.levelname == "ERROR" and f"S3 at 127.0.0.1:{port} {REFUSAL}"
               in record.getMessage() for record in caplog.records)


# The probe's stat of its own object (not of the racers' `-race` one).
PROBE_STAT = re.compile(rb"^HEAD /[^ ]*/" + PREFIX.encode() + rb"[0-9a-f]+[ ?]")


def test_an_object_the_probe_just_stored_gone_missing_is_no_verdict_and_probed_again(
        minio, caplog):
    """The CI failure of 2026-12-03: a worker died at start (a traceback, gunicorn exited)
    because the probe's stat of its own object answered NoSuchKey on a cluster just formed."""
    # Answered 404 once, as a distributed MinIO whose nodes do not all see every drive yet did.
    proxy = RefusingProxy(minio.endpoint, PROBE_STAT,
                          answer=b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    proxy.refuse = 1
    try:
        app = create_app(_settings(proxy.endpoint))
        client = app.test_client()
        assert proxy.refused == 1, proxy.refused
        assert any(f"S3 at {proxy.endpoint} gave no verdict yet (S3 did not show an object the "
                   "check had just stored)" in record.getMessage() for record in caplog.records)
        created = client.post("/files/", headers={**TUS, "Upload-Length": "5"})
        assert created.status_code == 201, created.text
        assert client.get("/healthz").get_json()["conditional_writes"] == "enforced"
        objects = Objects(_settings(minio.endpoint))
        assert _probe_objects(objects, objects.settings.system_bucket) == []
    finally:
        proxy.close()


def test_seaweedfs_keeps_every_promise_but_gets_no_bucket_per_upload(seaweedfs):
    settings = _settings(seaweedfs.endpoint, layout="prefix")
    result = run_probe(Objects(settings), settings.system_bucket)
    assert result.missing is None
    assert result.server.startswith("SeaweedFS")

    with pytest.raises(StorageRefused) as refused:
        create_app(settings.with_overrides(layout="bucket"))
    assert str(refused.value) == (
        f"TUS_LAYOUT=bucket needs a bucket per upload, which S3 at {seaweedfs.endpoint} "
        "(SeaweedFS) cannot sustain: every bucket takes volumes of its own and PUTs fail with "
        "'No writable volumes' after a few uploads; set TUS_LAYOUT=prefix")

    health = create_app(settings).test_client().get("/healthz")
    assert health.get_json() == {"status": "ok", "conditional_writes": "enforced"}


def test_a_user_who_may_not_use_the_system_bucket_is_refused_naming_it(minio):
    """A policy that covers only `tus-*` (docs/deployment.md before the check existed)."""
    admin = MinioAdmin(endpoint=minio.endpoint, secure=False,
                       credentials=StaticProvider(ACCESS_KEY, SECRET_KEY))
    admin.policy_add("tus-only", policy={"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:*"],
        "Resource": ["arn:aws:s3:::tus-*", "arn:aws:s3:::tus-*/*"]}]})
    admin.user_add("tus-scoped", "tus-scoped-secret")
    admin.attach_policy(["tus-only"], user="tus-scoped")
    settings = _settings(minio.endpoint, system_bucket="tusminio-probe-scoped").with_overrides(
        minio_access_key="tus-scoped", minio_secret_key="tus-scoped-secret")
    with pytest.raises(StorageRefused) as refused:
        create_app(settings)
    assert str(refused.value).startswith(
        f"S3 at {minio.endpoint} fails the conditional-write check: TUS_SYSTEM_BUCKET "
        "'tusminio-probe-scoped', where the check runs, cannot be used (AccessDenied); ")
