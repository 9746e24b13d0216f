"""Faults that must lose nothing: killed clients, a killed server, MinIO going away, and
concurrent PATCHes on one upload. Every case ends with a bit-identical file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import requests
from tusclient import client as tus_client

from .helpers import (
    MIB,
    TUS,
    create_url,
    head,
    metadata,
    patch,
    sha256,
    stored_file,
    upload_id,
)
from .minio_process import ROOT


def _offset(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


def _stored_offset(store, url: str) -> int:
    """The offset in the info object: read without a HEAD, which would stop a running PATCH."""
    return store.get(upload_id(url)).offset


def _wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _assert_offset_not_ahead_of_stored_bytes(store, url: str, data: bytes) -> int:
    offset = _offset(url)
    stored = stored_file(store, upload_id(url))
    assert len(stored) >= offset
    assert stored[:offset] == data[:offset]
    return offset


def _slow_body(data: bytes, piece: int, delay: float, started: threading.Event | None = None):
    for start in range(0, len(data), piece):
        if started is not None and start:
            started.set()
        yield data[start:start + piece]
        time.sleep(delay)


# ----------------------------------------------------------------------------- client killed
CLIENT_SCRIPT = textwrap.dedent("""
    import socket, sys, time
    from urllib.parse import urlparse
    url, path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    u = urlparse(url)
    data = open(path, "rb").read()
    sock = socket.create_connection((u.hostname, u.port))
    sock.sendall((f"PATCH {u.path} HTTP/1.1\\r\\nHost: {u.netloc}\\r\\nTus-Resumable: 1.0.0\\r\\n"
                  f"Upload-Offset: 0\\r\\nContent-Type: application/offset+octet-stream\\r\\n"
                  f"Content-Length: {total}\\r\\n\\r\\n").encode())
    for i in range(0, len(data), 65536):
        sock.sendall(data[i:i + 65536])
    print("sent", flush=True)
    time.sleep(600)
""")


def test_client_killed_mid_patch_resumes_to_identical_file(make_server, store, tmp_path):
    server = make_server(chunk_size=256 * 1024)
    data = os.urandom(3 * MIB)
    url = create_url(server.url, len(data), metadata(filename="killed-client.bin"))
    sent = tmp_path / "first-part"
    sent.write_bytes(data[:1_300_000])
    proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, url, str(sent), str(len(data))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "sent"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait_until(lambda: _offset(url) == 1_300_000, timeout=15)
    offset = _assert_offset_not_ahead_of_stored_bytes(store, url, data)
    assert patch(url, offset, data[offset:]).status_code == 204
    assert sha256(requests.get(url).content) == sha256(data)


# ----------------------------------------------------------------------------- server killed
def test_server_killed_mid_patch_restarts_and_resumes(gunicorn_server, store):
    app = gunicorn_server(chunk_size=MIB, lock_lease=2)
    data = os.urandom(12 * MIB)
    url = create_url(app.url, len(data), metadata(filename="killed-server.bin"))
    errors: list[BaseException] = []

    def send():
        try:
            patch(url, 0, _slow_body(data, 256 * 1024, 0.02))
        except requests.RequestException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert _wait_until(lambda: _stored_offset(store, url) >= 3 * MIB, timeout=60)
    app.kill()
    sender.join(timeout=30)
    assert errors, "the PATCH should have failed when the server died"

    app = gunicorn_server(port=app.port, chunk_size=MIB, lock_lease=2)
    offset = _assert_offset_not_ahead_of_stored_bytes(store, url, data)
    assert offset >= 3 * MIB and offset % MIB == 0  # only whole chunks were committed
    # The dead process's lock lease runs out after lock_lease seconds; then the PATCH goes in.
    deadline = time.monotonic() + 15
    while True:
        response = patch(url, offset, data[offset:])
        if response.status_code != 423 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 204, response.text
    assert sha256(requests.get(url).content) == sha256(data)


TUSPY_SCRIPT = textwrap.dedent("""
    import sys
    from tusclient import client
    from tusclient.storage import filestorage
    endpoint, path, store_path = sys.argv[1:4]
    storage = filestorage.FileStorage(store_path)
    uploader = client.TusClient(endpoint).uploader(
        path, chunk_size=512 * 1024, store_url=True, url_storage=storage,
        metadata={"filename": "resumed.bin"})
    print("start-offset", uploader.offset, flush=True)
    uploader.upload()
    print("url", uploader.url, flush=True)
    storage.close()
""")


def test_tuspy_killed_process_resumes_in_a_new_process(gunicorn_server, store, tmp_path):
    app = gunicorn_server(chunk_size=512 * 1024)
    data = os.urandom(16 * MIB)
    path = tmp_path / "resumed.bin"
    path.write_bytes(data)
    url_store = tmp_path / "urls.json"
    args = [sys.executable, "-c", TUSPY_SCRIPT, app.url + "/files/", str(path), str(url_store)]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().startswith("start-offset 0")

    def one_upload_with_progress():
        uploads = requests.get(app.url + "/files").json()["uploads"]
        return len(uploads) == 1 and uploads[0]["offset"] >= 2 * MIB

    assert _wait_until(one_upload_with_progress, timeout=60, interval=0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = requests.get(app.url + "/files").json()["uploads"][0]["offset"]
    assert killed_at < len(data), "the first process finished before it was killed"

    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    start_offset = int(second.stdout.splitlines()[0].split()[1])
    assert start_offset >= killed_at > 0  # resumed, did not start over
    listing = requests.get(app.url + "/files").json()
    assert len(listing["uploads"]) == 1 and listing["next"] is None  # no second upload was created
    url = second.stdout.splitlines()[1].split()[1]
    assert sha256(requests.get(url).content) == sha256(data)
    assert sha256(stored_file(store, upload_id(url))) == sha256(data)


# ----------------------------------------------------------------------------- MinIO down
def test_minio_down_gives_503_then_tuspy_finishes(make_server, store, s3, tmp_path):
    server = make_server(chunk_size=256 * 1024)
    data = os.urandom(6 * MIB)
    path = tmp_path / "outage.bin"
    path.write_bytes(data)
    uploader = tus_client.TusClient(server.files_url()).uploader(
        str(path), chunk_size=256 * 1024, retries=30, retry_delay=1,
        metadata={"filename": "outage.bin"})
    uploader.upload_chunk()
    uploader.upload_chunk()
    url = uploader.url

    s3.stop()
    try:
        response = patch(url, uploader.offset, b"x" * 1000)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "storage unavailable" in response.text
        assert head(url).status_code == 503
        health = requests.get(server.url + "/healthz")
        assert health.status_code == 503

        restarter = threading.Timer(3.0, s3.start)
        restarter.start()
        uploader.upload()  # retries through the outage
        restarter.join()
    finally:
        if s3.proc is None:
            s3.start()
    assert requests.get(server.url + "/healthz").status_code == 200
    assert sha256(requests.get(url).content) == sha256(data)
    assert sha256(stored_file(store, upload_id(url))) == sha256(data)


def test_minio_stopped_mid_patch_keeps_offset_behind_stored_bytes(make_server, store, s3):
    server = make_server(chunk_size=256 * 1024)
    data = os.urandom(4 * MIB)
    url = create_url(server.url, len(data))
    result: dict = {}

    def send():
        result["response"] = patch(url, 0, _slow_body(data, 64 * 1024, 0.01))

    sender = threading.Thread(target=send)
    sender.start()
    assert _wait_until(lambda: _stored_offset(store, url) >= MIB, timeout=30)
    s3.stop(signal.SIGKILL)
    try:
        sender.join(timeout=60)
        assert result["response"].status_code == 503
    finally:
        s3.start()
    offset = _assert_offset_not_ahead_of_stored_bytes(store, url, data)
    assert offset >= MIB
    assert patch(url, offset, data[offset:]).status_code == 204
    assert sha256(requests.get(url).content) == sha256(data)


# ----------------------------------------------------------------------------- concurrency
def test_second_patch_in_one_process_hands_over_and_never_interleaves(make_server, store):
    # One chunk larger than the body: nothing is committed until the first PATCH stops.
    server = make_server(chunk_size=4 * MIB)
    data = os.urandom(2 * MIB)
    url = create_url(server.url, len(data))
    started = threading.Event()
    result: dict = {}

    def slow():
        result["slow"] = patch(url, 0, _slow_body(data, 64 * 1024, 0.1, started))

    sender = threading.Thread(target=slow)
    sender.start()
    assert started.wait(10)
    time.sleep(0.3)
    intruder = patch(url, 0, b"\xff" * (512 * 1024))
    sender.join(timeout=60)
    # The running PATCH stored what it had received and let go; the intruder then found the
    # offset moved on.
    assert result["slow"].status_code == 400, result["slow"].text  # tusd's, not retried
    assert "took over" in result["slow"].text
    assert intruder.status_code == 409, intruder.text
    offset = _offset(url)
    assert 0 < offset < len(data)
    assert stored_file(store, upload_id(url))[:offset] == data[:offset]
    assert patch(url, offset, data[offset:]).status_code == 204
    assert sha256(requests.get(url).content) == sha256(data)


def test_delete_while_patch_runs_hands_over_and_terminates(make_server):
    server = make_server()
    url = create_url(server.url, 1_000_000)
    started = threading.Event()
    result: dict = {}

    def slow():  # about six seconds unless stopped
        try:
            result["slow"] = patch(url, 0, _slow_body(b"a" * 600_000, 10_000, 0.1, started))
        except requests.RequestException as exc:
            result["slow"] = exc

    sender = threading.Thread(target=slow)
    sender.start()
    assert started.wait(10)
    began = time.monotonic()
    assert requests.delete(url, headers=TUS).status_code == 204
    assert time.monotonic() - began < 3, "DELETE waited for the PATCH instead of a hand-over"
    sender.join(timeout=30)
    slow_status = getattr(result["slow"], "status_code", None)
    assert slow_status != 204 and slow_status != 500, result["slow"]
    assert head(url).status_code == 404
