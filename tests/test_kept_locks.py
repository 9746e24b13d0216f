"""A PATCH that leaves its upload unfinished keeps the lock and the state for the next PATCH
through the same process (`storage/kept_locks.py`): the next one costs MinIO its chunk and its
state only; another process gets the upload when it asks; a takeover while the lock is kept
changes nothing that was stored; a graceful stop releases what is kept."""
from __future__ import annotations

import signal
import time

import pytest
import requests

from tus_server.storage.lease import current as current_lock

from .helpers import MIB, TUS, create_url, head, metadata, patch, sha256, upload_id
from .request_counter import MinioRequests
from .test_multiprocess import pattern

CHUNK = MIB


def wait_for_state(store, uid: str, state: str, timeout: float = 10) -> float:
    """Seconds until the upload's newest lock generation has `state`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        lock = current_lock(store.objects, uid)
        if lock is not None and lock.state == state:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"the lock of {uid} never became {state!r}: {lock}")


def without_deletes(sent: list[str]) -> tuple[list[str], list[str]]:
    """The requests apart from multi-object DELETEs, and those DELETEs."""
    deletes = [line for line in sent if line.startswith("POST") and "?delete" in line]
    return [line for line in sent if line not in deletes], deletes


def test_the_next_patch_costs_its_chunk_and_its_state(make_server):
    server = make_server(chunk_size=CHUNK, lock_keep=5.0)
    store = server.store
    data = pattern(4 * CHUNK, b"kept-locks")
    url = create_url(server.url, len(data), metadata(filename="kept.bin"))
    with MinioRequests(store) as counter:
        assert patch(url, 0, data[:CHUNK]).status_code == 204
        for n in (1, 2):
            first = len(counter.trail)
            assert patch(url, n * CHUNK, data[n * CHUNK:(n + 1) * CHUNK]).status_code == 204
            # The chunk, the state, and now and then one DELETE of a batch of old states (in
            # the background, after the answer: it may come after the next request's).
            sent, tidied = without_deletes(counter.since(first))
            assert len(sent) == 2 and len(tidied) <= 1, (sent, tidied)
            assert sent[0].startswith("PUT") and f"kept.bin.part{n + 1}of4" in sent[0], sent
            assert sent[1].startswith("PUT") and "/.tus/info/" in sent[1], sent
        first = len(counter.trail)
        answer = head(url)
        assert answer.headers["Upload-Offset"] == str(3 * CHUNK)
        assert without_deletes(counter.since(first))[0] == []  # the kept state: no request
    lock = current_lock(store.objects, upload_id(url))
    assert lock.state == "held"
    # The last PATCH finishes the upload: it releases at once, nothing is kept.
    assert patch(url, 3 * CHUNK, data[3 * CHUNK:]).status_code == 204
    assert current_lock(store.objects, upload_id(url)).state == "released"
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


def test_a_kept_lock_is_released_after_its_time(make_server):
    server = make_server(chunk_size=CHUNK, lock_keep=0.5)
    url = create_url(server.url, 3 * MIB, metadata(filename="idle.bin"))
    uid = upload_id(url)
    assert patch(url, 0, b"x" * MIB).status_code == 204
    assert current_lock(server.store.objects, uid).state == "held"
    wait_for_state(server.store, uid, "released")
    assert head(url).headers["Upload-Offset"] == str(MIB)


def test_off_releases_at_the_end_of_each_patch(make_server):
    server = make_server(chunk_size=CHUNK, lock_keep=0)
    url = create_url(server.url, 3 * MIB, metadata(filename="off.bin"))
    assert patch(url, 0, b"x" * MIB).status_code == 204
    assert current_lock(server.store.objects, upload_id(url)).state == "released"


def test_other_requests_of_this_process_use_the_kept_lock(make_server):
    """A DELETE, or a PATCH that declares the length, right after a PATCH: each takes the
    kept lock over (no wait for its release) and lets it go after itself."""
    server = make_server(chunk_size=CHUNK, lock_keep=30.0)
    url = create_url(server.url, None, metadata(filename="deferred.bin"),
                     headers={"Upload-Defer-Length": "1"})
    uid = upload_id(url)
    assert patch(url, 0, b"a" * MIB).status_code == 204
    assert current_lock(server.store.objects, uid).state == "held"
    began = time.monotonic()
    declared = patch(url, MIB, b"b" * 10, headers={"Upload-Length": str(MIB + 10)})
    assert declared.status_code == 204 and declared.headers["Upload-Offset"] == str(MIB + 10)
    assert current_lock(server.store.objects, uid).state == "released"  # finished: not kept
    assert sha256(requests.get(url).content) == sha256(b"a" * MIB + b"b" * 10)

    other = create_url(server.url, 2 * MIB, metadata(filename="deleted.bin"))
    assert patch(other, 0, b"c" * MIB).status_code == 204
    assert current_lock(server.store.objects, upload_id(other)).state == "held"
    assert requests.delete(other, headers=TUS).status_code == 204
    assert head(other).status_code == 404
    assert time.monotonic() - began < 20, "a request waited for the 30 s keep"


@pytest.fixture
def two_instances(gunicorn_server):
    # Kept far longer than the test runs: a kept lock ends only when the other instance asks
    # (with 0.5 s a slow test client could come after it ended, and nothing would be asked).
    return (gunicorn_server(chunk_size=CHUNK, lock_keep=30.0),
            gunicorn_server(chunk_size=CHUNK, lock_keep=30.0))


def test_another_instance_gets_a_kept_upload_when_it_asks(two_instances, store):
    """Behind a balancer that sends each PATCH to the next instance: every PATCH finds the
    upload kept by the other instance, which hands it over; after one hand-over each
    instance stops keeping that upload, and every byte arrives in order."""
    a, b = two_instances
    data = pattern(6 * CHUNK + 17, b"round-robin")
    url_a = create_url(a.url, len(data), metadata(filename="rr.bin"))
    uid = upload_id(url_a)
    urls = [url_a, b.url + "/files/" + uid]
    offset, n = 0, 0
    while offset < len(data):
        piece = data[offset:offset + CHUNK]
        answer = patch(urls[n % 2], offset, piece)
        assert answer.status_code == 204, (n, answer.status_code, answer.text)
        offset += len(piece)
        assert answer.headers["Upload-Offset"] == str(offset)
        if n >= 2 and offset < len(data):  # both were asked once: neither keeps it now
            assert current_lock(store.objects, uid).state == "released", n
        # A HEAD on the other instance asks for the upload too, and sees every byte.
        assert head(urls[(n + 1) % 2]).headers["Upload-Offset"] == str(offset)
        n += 1
    got = requests.get(urls[0])
    assert got.status_code == 200 and sha256(got.content) == sha256(data)
    # Released, not kept (the digest pass of the finished upload may hold it for a moment).
    wait_for_state(store, uid, "released")


def test_a_takeover_while_the_lock_is_kept_changes_nothing_stored(gunicorn_server, store):
    """Instance a keeps the lock after a PATCH and then freezes (SIGSTOP: its heartbeat and
    keeper stop); b takes the upload over and stores more. a thaws and is sent a PATCH at the
    offset it kept: the conditional write of its state finds b's, so nothing of it counts (409),
    and the file is what b stored."""
    a = gunicorn_server(chunk_size=CHUNK, lock_keep=60.0)
    b = gunicorn_server(chunk_size=CHUNK)
    data = pattern(4 * CHUNK, b"frozen-holder")
    url_a = create_url(a.url, len(data), metadata(filename="frozen.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid
    assert patch(url_a, 0, data[:CHUNK]).status_code == 204
    assert current_lock(store.objects, uid).state == "held"
    a.send_signal(signal.SIGSTOP)
    try:
        answer = patch(url_b, CHUNK, data[CHUNK:2 * CHUNK])  # waits for a's heartbeat to age
        assert answer.status_code == 204, answer.text
    finally:
        a.send_signal(signal.SIGCONT)
    stale = patch(url_a, CHUNK, b"Z" * CHUNK)
    assert stale.status_code == 409, (stale.status_code, stale.text)
    assert head(url_a).headers["Upload-Offset"] == str(2 * CHUNK)
    assert patch(url_a, 2 * CHUNK, data[2 * CHUNK:]).status_code == 204
    got = requests.get(url_b)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


def test_a_graceful_stop_releases_the_kept_locks(gunicorn_server, store):
    a = gunicorn_server(chunk_size=CHUNK, lock_keep=60.0)
    url = create_url(a.url, 3 * MIB, metadata(filename="stopping.bin"))
    uid = upload_id(url)
    assert patch(url, 0, b"s" * MIB).status_code == 204
    assert current_lock(store.objects, uid).state == "held"
    a.kill(signal.SIGTERM)
    assert current_lock(store.objects, uid).state == "released"
