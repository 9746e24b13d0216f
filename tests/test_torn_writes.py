"""No torn write loses an upload, and bytes past the offset never reach a finished file.

* An erasure-coded MinIO whose newest state object is damaged on the drives (as a state write
  that reached only some drives leaves it): HEAD answers the state before it, never 404, and the
  upload resumes to the right SHA-256; with no readable state at all, 503 + Retry-After.
* The audit's sequences (tus and IETF): a PATCH whose checksum fails, then an empty request that
  declares the length: the file is what was acknowledged.
* The app SIGKILLed between a chunk PUT and the state write that records it (a loopback TCP
  proxy in front of MinIO holds that state PUT while the test kills the app): after a restart
  the upload resumes, or finishes by declaring its length, with the right SHA-256.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time

import pytest
import requests

from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.layout import GENERATION_PREFIX, INFO_NAME
from tus_server.storage.minio_backend import MinioStore

from .helpers import (
    MIB,
    TUS,
    ThreadedServer,
    create_url,
    head,
    metadata,
    patch,
    read_object,
    sha256,
    stored_objects,
    upload_id,
)
from .minio_process import ACCESS_KEY, SECRET_KEY
from .test_erasure import erasure_minio  # noqa: F401  (the fixture)
from .test_ietf import DRAFT, append, create as ietf_create

KIB = 1024


def newest_state_key(store: MinioStore, uid: str) -> str:
    """The object holding the upload's current state (relative to its bucket or prefix): the
    newest generation (they sort newest first), or the single state object of earlier versions."""
    generations = sorted(n for n in stored_objects(store, uid) if n.startswith(GENERATION_PREFIX))
    return generations[0] if generations else INFO_NAME


def tear(minio, store: MinioStore, uid: str, key: str, drives: int = 3) -> None:
    """Remove an object's metadata (xl.meta, holding small objects inline) from `drives` of
    the drives, as a write that reached only the others leaves it."""
    bucket, prefix = store._location(uid)
    removed = 0
    for drive in minio.drive_paths()[:drives]:
        meta = drive / bucket / (prefix + key) / "xl.meta"
        if meta.exists():
            meta.unlink()
            removed += 1
    assert removed == drives, f"{key} was not on {drives} drives"


@pytest.fixture
def erasure_store(erasure_minio, layout):  # noqa: F811
    settings = Settings(minio_endpoint=erasure_minio.endpoint, minio_access_key=ACCESS_KEY,
                        minio_secret_key=SECRET_KEY, cleanup_interval=0, layout=layout,
                        bucket="tus-torn", retry_after=1, chunk_size=64 * KIB,
                        # The tests tear states behind the server's back: a kept lock's state
                        # (kept_locks.py) would answer what this process committed instead.
                        lock_keep=0)
    store = MinioStore(settings)
    served = ThreadedServer(create_app(settings, store))
    yield served.url, store
    served.stop()


def test_a_torn_state_write_falls_back_to_the_state_before(erasure_minio, erasure_store):  # noqa: F811
    base, store = erasure_store
    data = os.urandom(300 * KIB)
    url = create_url(base, len(data), metadata(filename="torn.bin"))
    uid = upload_id(url)
    assert patch(url, 0, data[:100 * KIB]).status_code == 204
    assert patch(url, 100 * KIB, data[100 * KIB:150 * KIB]).status_code == 204
    newest = newest_state_key(store, uid)
    states = sorted(n for n in stored_objects(store, uid) if n.startswith(GENERATION_PREFIX))
    # The state before the newest (the first PATCH's, or the second's at its chunk boundary).
    before = json.loads(read_object(store, uid, states[1]))["offset"] if newest in states \
        else 100 * KIB  # earlier versions: the one state object, rewritten in place
    assert before < 150 * KIB
    tear(erasure_minio, store, uid, newest)
    bucket, prefix = store._location(uid)
    with pytest.raises(Exception):  # the damaged state object is really unreadable
        store.client.get_object(bucket, prefix + newest).read()

    response = head(url)
    assert response.status_code == 200, response.text
    assert response.headers["Upload-Offset"] == str(before)
    response = patch(url, before, data[before:])
    assert response.status_code == 204, response.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


def test_an_upload_with_no_readable_state_is_503_not_404(erasure_minio, erasure_store):  # noqa: F811
    base, store = erasure_store
    url = create_url(base, 10, metadata(filename="unreadable.bin"))
    uid = upload_id(url)
    assert patch(url, 0, b"01234").status_code == 204
    for name in stored_objects(store, uid):
        if name.startswith(GENERATION_PREFIX):
            tear(erasure_minio, store, uid, name)
    response = head(url)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert requests.head(base + "/files/tus-" + "0" * 32, headers=TUS).status_code == 404


# ----------------------------------------------------------------------------- the audit's sequences
def test_bytes_of_a_failed_checksum_never_reach_the_finished_file_tus(server):
    data = os.urandom(3 * MIB)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"},
                     meta=metadata(filename="deferred.bin"))
    assert patch(url, 0, data).status_code == 204
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"not these bytes").digest()).decode()
    response = patch(url, len(data), os.urandom(MIB), headers={"Upload-Checksum": wrong})
    assert response.status_code == 460
    assert head(url).headers["Upload-Offset"] == str(len(data))
    response = patch(url, len(data), b"", headers={"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)
    ranged = requests.get(url, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]


def test_bytes_of_a_failed_digest_never_reach_the_finished_file_ietf(server):
    data = os.urandom(3 * MIB)
    created = ietf_create(server.url, data=data)
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    wrong = "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":"
    refused = append(url, len(data), os.urandom(MIB), complete=False,
                     **{"Content-Digest": wrong})
    assert refused.status_code == 400
    assert requests.head(url, headers=DRAFT).headers["Upload-Offset"] == str(len(data))
    done = append(url, len(data), b"", complete=True)
    assert done.status_code == 204, done.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


# ----------------------------------------------------------------------------- killed at the commit
CHUNK_PUT = re.compile(rb"PUT /\S*\.part\d+of")
STATE_PUT = re.compile(rb"PUT /\S*/\.tus/info")


class HoldingProxy:
    """A loopback TCP proxy in front of MinIO. Once armed, it holds (never forwards) the first
    state write that follows a chunk PUT, and sets `held`: the app is then between the two."""

    def __init__(self, target: str):
        host, port = target.split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.armed = threading.Event()
        self.held = threading.Event()
        self.chunk_seen = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.chunk_seen = False
        self.held.clear()
        self.armed.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        tail, holding = b"", False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if inspect and self.armed.is_set() and not holding:
                    window = tail + data
                    tail = window[-512:]
                    if CHUNK_PUT.search(window):
                        self.chunk_seen = True
                    elif self.chunk_seen and STATE_PUT.search(window):
                        holding = True
                        self.armed.clear()
                        self.held.set()
                if not holding:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass


@pytest.fixture
def proxy(minio):
    holding = HoldingProxy(minio.endpoint)
    yield holding
    holding.close()


def _killed_at_the_commit(app, gunicorn_server, proxy, url: str, offset: int, body: bytes):
    """PATCH `body` at `offset` through `app`, SIGKILLed between its chunk PUT and the state
    write for it; then start an app on the same port, straight to MinIO."""
    proxy.arm()
    failed: list[BaseException] = []

    def send():
        try:
            patch(url, offset, body)
        except requests.RequestException as exc:
            failed.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert proxy.held.wait(60), "the app never wrote the state after a chunk"
    app.kill()
    sender.join(timeout=30)
    assert failed, "the PATCH should have failed when the app died"
    return gunicorn_server(port=app.port, lock_lease=2)


def _patch_when_free(url: str, offset: int, body: bytes, headers=None) -> requests.Response:
    """The dead app's lock runs out after its lease; until then the PATCH is 423."""
    deadline = time.monotonic() + 20
    while True:
        response = patch(url, offset, body, headers)
        if response.status_code != 423 or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_killed_between_chunk_and_commit_then_length_declared(gunicorn_server, proxy):
    app = gunicorn_server(minio_endpoint=proxy.endpoint, lock_lease=2)
    data = os.urandom(3 * MIB)
    url = create_url(app.url, headers={"Upload-Defer-Length": "1"},
                     meta=metadata(filename="killed.bin"))
    assert patch(url, 0, data).status_code == 204
    # Fills chunk 1 (5 MiB) with 2 MiB past the offset, then dies before recording it.
    _killed_at_the_commit(app, gunicorn_server, proxy, url, len(data), os.urandom(3 * MIB))
    assert head(url).headers["Upload-Offset"] == str(len(data))
    response = _patch_when_free(url, len(data), b"", {"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


def test_killed_between_chunk_and_commit_then_resumed(gunicorn_server, proxy):
    app = gunicorn_server(minio_endpoint=proxy.endpoint, lock_lease=2)
    data = os.urandom(8 * MIB)
    url = create_url(app.url, len(data), metadata(filename="resumed.bin"))
    assert patch(url, 0, data[:3 * MIB]).status_code == 204
    _killed_at_the_commit(app, gunicorn_server, proxy, url, 3 * MIB, data[3 * MIB:6 * MIB])
    assert head(url).headers["Upload-Offset"] == str(3 * MIB)
    response = _patch_when_free(url, 3 * MIB, data[3 * MIB:])  # replaces the chunk left behind
    assert response.status_code == 204, response.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)
