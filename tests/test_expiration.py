"""The expiration extension: Upload-Expires, 410 Gone, and the sweepers that remove uploads."""
from __future__ import annotations

import subprocess
import sys
import time
from email.utils import parsedate_to_datetime

import requests

from .helpers import TUS, create, create_url, head, leftovers, patch, upload_id
from .minio_process import ROOT


def _expires(response) -> float:
    return parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp()


def test_upload_expires_on_post_patch_and_head(make_server):
    server = make_server(expiration=2)
    before = time.time()
    response = create(server.url, 10)
    assert response.status_code == 201
    assert before + 1 <= _expires(response) <= time.time() + 3
    assert response.headers["Upload-Expires"].endswith(" GMT")
    url = response.headers["Location"]
    patched = patch(url, 0, b"abc")
    assert before + 1 <= _expires(patched) <= time.time() + 3
    assert _expires(head(url)) == _expires(patched)


def test_patch_pushes_expiry_forward(make_server):
    server = make_server(expiration=3)
    url = create_url(server.url, 10)
    first = _expires(head(url))
    time.sleep(1.1)
    patched = patch(url, 0, b"a")
    assert _expires(patched) >= first + 1


def test_finished_upload_has_no_upload_expires(make_server):
    server = make_server(expiration=2)
    url = create_url(server.url, 3)
    response = patch(url, 0, b"abc")
    assert "Upload-Expires" not in response.headers
    assert "Upload-Expires" not in head(url).headers


def test_expired_upload_answers_410(make_server):
    server = make_server(expiration=1)
    url = create_url(server.url, 10)
    patch(url, 0, b"abc")
    time.sleep(2.2)
    assert head(url).status_code == 410
    response = patch(url, 3, b"def")
    assert response.status_code == 410
    assert "expired" in response.text
    assert requests.get(url).status_code == 410


def test_cleanup_command_removes_expired_and_keeps_finished(make_server, store):
    server = make_server(expiration=1)
    stale = upload_id(create_url(server.url, 10))
    finished_url = create_url(server.url, 3)
    patch(finished_url, 0, b"abc")
    time.sleep(2.2)
    settings = server.settings
    env = {"MINIO_ENDPOINT": settings.minio_endpoint, "MINIO_ACCESS_KEY": settings.minio_access_key,
           "MINIO_SECRET_KEY": settings.minio_secret_key, "TUS_LAYOUT": settings.layout,
           "TUS_BUCKET": settings.bucket, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "tus_server", "cleanup"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert stale in result.stdout
    assert leftovers(store, stale) == {}
    assert head(finished_url).status_code == 200
    assert requests.get(finished_url).content == b"abc"
    if settings.layout == "bucket":
        assert not store.client.bucket_exists(stale)


def test_background_sweeper_removes_expired_uploads(make_server, store):
    server = make_server(expiration=1, cleanup_interval=1)
    url = create_url(server.url, 10)
    deadline = time.time() + 10
    while time.time() < deadline and head(url).status_code != 404:
        time.sleep(0.3)
    assert head(url).status_code == 404
    assert leftovers(store, upload_id(url)) == {}


def test_retention_removes_finished_uploads_when_configured(make_server, store):
    server = make_server(retention=1)
    url = create_url(server.url, 3)
    patch(url, 0, b"abc")
    time.sleep(1.5)
    removed = server.store.expire(time.time())
    assert upload_id(url) in removed
    assert head(url).status_code == 404


def test_delete_of_expired_upload_still_terminates(make_server, store):
    server = make_server(expiration=1)
    url = create_url(server.url, 10)
    time.sleep(1.5)
    assert requests.delete(url, headers=TUS).status_code == 204
    assert leftovers(store, upload_id(url)) == {}
