"""Integrity under stalls, cuts, hand-overs and shutdowns (the audit of issue 13).

Each test speaks raw HTTP where it has to stall or cut a body at an exact byte, runs the app
under gunicorn as `make run` does, and checks the stored bytes, offsets and digests.
"""
from __future__ import annotations

import base64
import hashlib
import os
import signal
import time

import pytest
import requests
from tusclient import client as tus_client

from tus_server.storage.lease import current as current_lock

from .helpers import MIB, create_url, head, metadata, patch, sha256, stored_file, upload_id
from .raw_http import RawPatch


def pattern(size: int, label: bytes) -> bytes:
    """Bytes that say whose they are, so a mix of two writers' bytes is visible."""
    block = hashlib.sha256(label).digest() * 32
    return (block * (size // len(block) + 1))[:size]


def repr_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def wait_for(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def offset_of(url: str) -> int:
    response = head(url)
    assert response.status_code == 200, (response.status_code, response.text)
    return int(response.headers["Upload-Offset"])


def lock_taken(store, uid: str) -> bool:
    lock = current_lock(store.objects, uid)
    return lock is not None and lock.state != "released"


# ----------------------------------------------------------------------------- stale writer
@pytest.mark.parametrize("stall_after", [4 * MIB, 1 * MIB], ids=["4MiB", "1MiB"])
def test_stalled_writer_cannot_overwrite_a_finished_upload(gunicorn_server, store, stall_after):
    """Writer A stalls (its process is frozen) past its lease; B takes over and finishes;
    A wakes up and sends more. The finished upload keeps B's bytes and digest."""
    a = gunicorn_server(lock_lease=2, handover_wait=6.0)
    b = gunicorn_server(lock_lease=2, handover_wait=6.0)
    size = 12 * MIB
    bytes_a, bytes_b = pattern(size, b"writer-a"), pattern(size, b"writer-b")
    url_a = create_url(a.url, size, metadata(filename="stale.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid

    writer_a = RawPatch(url_a, 0, length=size)
    writer_a.send(bytes_a[:stall_after])
    assert wait_for(lambda: lock_taken(store, uid), 10)
    time.sleep(0.5)  # A's worker has read what was sent
    frozen = a.worker_pids()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        # B waits for A's lease to run out (retrying on 423 as a client would), then takes over.
        deadline = time.monotonic() + 20
        while True:
            done = patch(url_b, 0, bytes_b)
            if done.status_code != 423 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert done.status_code == 204, done.text
        writer_a.send(bytes_a[stall_after:stall_after + MIB])
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    writer_a.sock.settimeout(20)
    try:
        status, _, text = writer_a.response()
        assert status in (400, 409, 423), (status, text)  # fenced: never 500, never 204
    except (ConnectionError, OSError):
        pass  # A's request may also just end; what matters is what is stored
    writer_a.close()
    time.sleep(1.0)

    assert offset_of(url_b) == size
    got = requests.get(url_a)
    assert got.status_code == 200
    assert sha256(got.content) == sha256(bytes_b)
    assert got.headers.get("Repr-Digest") == repr_digest(bytes_b)
    assert stored_file(store, uid) == bytes_b
    assert "Traceback" not in a.log_path.read_text()


# ----------------------------------------------------------------------------- hand-over
def test_client_that_drops_mid_patch_resumes_at_once_through_the_hand_over(gunicorn_server,
                                                                           store):
    """The dead connection's PATCH still holds a 30 s lease; a resuming client's HEAD makes
    it store what it received and let go, on another instance, within seconds."""
    a = gunicorn_server()
    b = gunicorn_server()
    data = os.urandom(8 * MIB)
    url_a = create_url(a.url, len(data), metadata(filename="dropped.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid
    dropped = RawPatch(url_a, 0, length=len(data))
    dropped.send(data[:3 * MIB + 123])  # then silence, the connection left open
    assert wait_for(lambda: lock_taken(store, uid), 10)
    time.sleep(0.3)

    began = time.monotonic()
    offset = offset_of(url_b)
    assert offset == 3 * MIB + 123, "the HEAD did not count every byte the server received"
    resumed = patch(url_b, offset, data[offset:])
    elapsed = time.monotonic() - began
    assert resumed.status_code == 204, resumed.text
    assert elapsed < 8, f"resuming took {elapsed:.1f} s (the lease is 30 s)"
    status, headers, text = dropped.response()
    assert status == 400, text  # as tusd: the superseded client must not come back (423 would)
    assert b"took over" in text
    assert headers["tus-resumable"] == "1.0.0"
    dropped.close()
    assert sha256(requests.get(url_a).content) == sha256(data)
    # (a background digest pass may hold the lock for a moment)
    assert wait_for(lambda: not lock_taken(store, uid), 10), \
        f"the lock was never released: {current_lock(store.objects, uid)}"


# ----------------------------------------------------------------------------- cut connections
def test_cut_connection_keeps_every_received_byte(gunicorn_server, store):
    app = gunicorn_server()
    outcomes = []
    for how in ("fin", "rst"):
        for chunked in (False, True):
            for size in (5120, 2 * MIB + MIB // 2):
                data = os.urandom(size)
                url = create_url(app.url, 2 * size, metadata(filename="cut.bin"))
                writer = RawPatch(url, 0, length=None if chunked else 2 * size, chunked=chunked)
                for start in range(0, size, 64 * 1024):
                    writer.send(data[start:start + 64 * 1024])
                time.sleep(0.3)  # arrived at the server
                writer.cut(how)
                case = f"{how} {'chunked' if chunked else 'length'} {size}"
                stored = wait_for(lambda: offset_of(url) == size and offset_of(url), 1.0)
                outcomes.append((case, offset_of(url)))
                assert stored == size, f"{case}: stored {offset_of(url)} of {size} received"
                assert stored_file(store, upload_id(url))[:size] == data, case
    print(outcomes)


# ----------------------------------------------------------------------------- shutdown
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_shutdown_mid_patch_answers_503_and_keeps_every_byte(gunicorn_server, store, sig):
    app = gunicorn_server()
    data = os.urandom(10 * MIB)
    url = create_url(app.url, len(data), metadata(filename="shutdown.bin"))
    writer = RawPatch(url, 0, length=len(data))
    received = 3 * MIB + 77
    writer.send(data[:received])
    assert wait_for(lambda: lock_taken(store, upload_id(url)), 10)
    time.sleep(0.3)

    began = time.monotonic()
    os.killpg(app.proc.pid, sig)
    writer.sock.settimeout(15)
    status, headers, body = writer.response()
    assert status == 503, body
    assert headers.get("retry-after")
    assert app.proc.wait(timeout=15) == 0  # an asked-for stop is a clean exit, as tusd's
    assert time.monotonic() - began < 8, "the worker did not let go promptly"
    writer.close()
    assert "Traceback" not in app.log_path.read_text()

    app = gunicorn_server(port=app.port)
    assert offset_of(url) == received
    assert patch(url, received, data[received:]).status_code == 204
    assert sha256(requests.get(url).content) == sha256(data)


# ----------------------------------------------------------------------------- slow clients
def test_silent_patch_ends_after_the_body_timeout_keeping_its_bytes(gunicorn_server, store):
    app = gunicorn_server(body_timeout=1.0)
    url = create_url(app.url, 100_000)
    writer = RawPatch(url, 0, length=100_000)
    writer.send(b"q" * 1000)
    began = time.monotonic()
    writer.sock.settimeout(10)
    status, _, body = writer.response()
    assert status == 500, body  # tusd's ERR_READ_TIMEOUT: tus clients retry a 5xx, not a 408
    assert b"stored up to offset 1000" in body
    assert time.monotonic() - began < 4
    writer.close()
    assert offset_of(url) == 1000
    assert not lock_taken(store, upload_id(url))


def test_idle_patch_connections_do_not_starve_a_fresh_client(gunicorn_server, tmp_path):
    app = gunicorn_server()  # the default gunicorn settings (tus_server/gunicorn_conf.py)
    idle = []
    try:
        for _ in range(100):
            url = create_url(app.url, MIB)
            writer = RawPatch(url, 0, length=MIB)
            writer.send(b"i")
            idle.append(writer)
        data = os.urandom(3 * MIB + 5)
        path = tmp_path / "fresh.bin"
        path.write_bytes(data)
        began = time.monotonic()
        uploader = tus_client.TusClient(app.url + "/files/").uploader(
            str(path), chunk_size=MIB, metadata={"filename": "fresh.bin"})
        uploader.upload()
        assert time.monotonic() - began < 20
        assert sha256(requests.get(uploader.url).content) == sha256(data)
    finally:
        for writer in idle:
            writer.close()


# ----------------------------------------------------------------------------- over-length
def test_chunked_body_that_reaches_the_length_is_answered_without_waiting_for_more(
        gunicorn_server, store):
    """The client sent exactly the rest of the upload but not yet the last chunk: the bytes
    are stored and the answer comes promptly, not when the client gives up."""
    app = gunicorn_server()
    data = os.urandom(10_000)
    url = create_url(app.url, len(data))
    writer = RawPatch(url, 0, chunked=True)
    writer.send(data)
    began = time.monotonic()
    writer.sock.settimeout(10)
    status, headers, body = writer.response()
    assert status == 204, body
    assert headers["upload-offset"] == "10000"
    assert time.monotonic() - began < 2.5
    writer.close()
    assert sha256(requests.get(url).content) == sha256(data)


def test_chunked_body_past_the_length_is_413_after_storing_up_to_it(gunicorn_server, store):
    app = gunicorn_server()
    data = os.urandom(12_000)
    url = create_url(app.url, 10_000)
    writer = RawPatch(url, 0, chunked=True)
    writer.send(data[:6000])
    writer.send(data[6000:])  # no terminating chunk: the client waits for an answer
    began = time.monotonic()
    writer.sock.settimeout(10)
    status, headers, body = writer.response()
    assert status == 413, body
    assert time.monotonic() - began < 2.5
    writer.close()
    assert offset_of(url) == 10_000
    assert stored_file(store, upload_id(url)) == data[:10_000]
