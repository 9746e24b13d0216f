"""A key stuck inside MinIO stalls nothing: not an upload, not a live instance's heartbeat.

On a distributed MinIO, a key whose write a SIGKILLed node was coordinating stays locked
inside MinIO until its stale-lock cleanup (1-2 minutes): every later request on that key
hangs. A loopback proxy in front of MinIO plays that part here: it never answers a request for
two keys, the upload lock's second generation (the first PATCH's release) and every instance's
third heartbeat. Locks and heartbeats are write-once (`storage/lease.py`,
`storage/instances.py`), so the server gives up on each stuck key after a few seconds and
goes on with the next number.
"""
from __future__ import annotations

import os
import time
from urllib.parse import unquote

import requests

from tus_server.storage.generations import HEDGE_AFTER
from tus_server.storage.instances import Instances
from tus_server.storage.layout import generation_key
from tus_server.storage.lease import TOP
from tus_server.storage.lease import current as current_lock
from tus_server.storage.lock_generations import write_generation
from tus_server.storage.objects import QUICK

from .header_proxy import HeaderStrippingProxy
from .helpers import MIB, create_url, head, metadata, patch, sha256, stored_objects, upload_id

PIECE = 256 * 1024
STUCK_LOCK = f"/.tus/lock/{TOP - 2:012d}"
STUCK_BEAT = f"/{TOP - 3:012d}"


def stuck(path: str) -> bool:
    key = unquote(path.split("?", 1)[0])
    return key.endswith(STUCK_LOCK) or ("/instances/" in key and key.endswith(STUCK_BEAT))


def test_an_upload_goes_on_and_its_instance_stays_alive_past_stuck_keys(minio, gunicorn_server,
                                                                        store, settings):
    proxy = HeaderStrippingProxy(minio.endpoint, stall=stuck)
    try:
        # Locks released at the end of each request, as this test was written for: with kept
        # locks the release that meets the stuck lock key runs in the background, and in two
        # of four runs on 2026-12-02 an instance's beats then stopped landing for 2 s (not
        # understood yet; see the closing note of that day).
        app = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint, lock_keep=0)
        data = os.urandom(8 * PIECE)
        url = create_url(app.url, len(data), metadata(filename="stuck.bin"))
        uid = upload_id(url)
        instances = Instances(store.objects, settings)
        statuses, ages, instance = [], [], None
        for offset in range(0, len(data), PIECE):
            statuses.append(patch(url, offset, data[offset:offset + PIECE]).status_code)
            instance = instance or current_lock(store.objects, uid).instance
            ages.append(instances.age(instance))
            time.sleep(0.5)
        assert statuses == [204] * len(statuses), statuses
        assert any(STUCK_LOCK in line for line in proxy.stalled), proxy.stalled
        assert any(STUCK_BEAT in line.split("?")[0] for line in proxy.stalled), proxy.stalled
        # Never dead by its heartbeat (the verdict that hands its uploads to another instance).
        assert all(age is not None and age < settings.heartbeat_timeout for age in ages), ages
        assert head(url).headers["Upload-Offset"] == str(len(data))
        assert sha256(requests.get(url).content) == sha256(data)
        # The stuck generation was skipped: the lock is released above it.
        assert current_lock(store.objects, uid).state == "released"
    finally:
        proxy.close()


def proxy_stalling_one_key(minio) -> tuple[HeaderStrippingProxy, dict]:
    """A proxy in front of MinIO that never answers a request for the key `armed["key"]` (a
    key stuck inside MinIO); none while it is None. The proxy and `armed`."""
    armed: dict = {"key": None}

    def stall(path: str) -> bool:
        return armed["key"] is not None and unquote(path.split("?", 1)[0]).endswith(armed["key"])

    return HeaderStrippingProxy(minio.endpoint, stall=stall), armed


def written_to_generation_3(gunicorn_server, proxy, filename: str):
    """Two instances behind `proxy`; instance a wrote an upload's generations 2 and 3 (two
    PATCHes of PIECE bytes). Instance b, its upload id and its 3 * PIECE bytes."""
    a = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint, lock_keep=0)
    b = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint, lock_keep=0)
    data = os.urandom(3 * PIECE)
    url_a = create_url(a.url, len(data), metadata(filename=filename))
    assert patch(url_a, 0, data[:PIECE]).status_code == 204  # generation 2
    assert patch(url_a, PIECE, data[PIECE:2 * PIECE]).status_code == 204  # generation 3
    return b, upload_id(url_a), data


class SlowProxy(HeaderStrippingProxy):
    """Answers GETs of one key `delay` seconds late (a MinIO slow under load, not stuck)."""

    def __init__(self, upstream: str, delay: float):
        super().__init__(upstream)
        self.key: str | None = None
        self.delay = delay
        self.delayed: list[str] = []

    def before_forward(self, request_line: bytes, upstream) -> None:
        line = request_line.decode()
        if self.key and line.startswith("GET ") and \
                unquote(line.split()[1].split("?", 1)[0]).endswith(self.key):
            self.delayed.append(line.strip())
            time.sleep(self.delay)


def test_a_state_generation_answered_late_is_used_once_it_came(minio, gunicorn_server):
    """Generation 3's GET answers after HEDGE_AFTER: the read that asked goes on from
    generation 2 (the client re-sends a few bytes, nothing is lost), and keeps the late answer,
    so the next read is generation 3's, without asking MinIO again."""
    proxy = SlowProxy(minio.endpoint, delay=HEDGE_AFTER + 0.6)
    try:
        b, uid, data = written_to_generation_3(gunicorn_server, proxy, "slow-read.bin")
        proxy.key = "/" + generation_key(3)
        url_b = b.url + "/files/" + uid
        assert head(url_b).headers["Upload-Offset"] == str(PIECE)
        time.sleep(1.0)  # the late answer arrives
        assert head(url_b).headers["Upload-Offset"] == str(2 * PIECE)
        assert len(proxy.delayed) == 1, proxy.delayed
        response = patch(url_b, 2 * PIECE, data[2 * PIECE:])
        assert response.status_code == 204, response.text
        assert sha256(requests.get(url_b).content) == sha256(data)
    finally:
        proxy.close()


STUCK_STATE = "/" + generation_key(3)  # the second PATCH's commit


def test_a_state_generation_stuck_inside_minio_is_skipped_by_its_commit(minio, gunicorn_server,
                                                                          store):
    """The scale-out run that stalled 112-118 s: the commit of a PATCH was in flight when a
    MinIO node died, its key stayed locked, and every retry of the client tried the same
    generation number again until MinIO's stale-lock cleanup. Now the commit gives up on the
    stuck key after a few seconds and writes the next number, in the same request."""
    proxy = HeaderStrippingProxy(minio.endpoint,
                                 stall=lambda path: unquote(path.split("?", 1)[0])
                                 .endswith(STUCK_STATE))
    try:
        app = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint)
        data = os.urandom(4 * PIECE)
        url = create_url(app.url, len(data), metadata(filename="stuck-state.bin"))
        uid = upload_id(url)
        statuses = [patch(url, offset, data[offset:offset + PIECE]).status_code
                    for offset in range(0, len(data), PIECE)]
        assert statuses == [204] * len(statuses), statuses
        assert any(STUCK_STATE in line for line in proxy.stalled), proxy.stalled
        names = stored_objects(store, uid)
        assert generation_key(3) not in names  # never written: skipped, not waited for
        assert head(url).headers["Upload-Offset"] == str(len(data))
        assert sha256(requests.get(url).content) == sha256(data)
    finally:
        proxy.close()


def test_a_state_generation_whose_read_hangs_is_read_past_and_not_asked_again(
        minio, gunicorn_server, store):
    """Instance a committed generation 3, whose key then stays locked inside MinIO (its GET
    never answers). Instance b reads past it to generation 2 after the short timeout, once:
    later reads skip it, instead of waiting out the timeout every time."""
    proxy, armed = proxy_stalling_one_key(minio)
    try:
        b, uid, data = written_to_generation_3(gunicorn_server, proxy, "stuck-read.bin")
        armed["key"] = "/" + generation_key(3)
        url_b = b.url + "/files/" + uid
        # Generation 2's offset: the bytes of 3 are stored, but its state cannot be read. The
        # first read gives up on it after HEDGE_AFTER, not after the 3 s timeout.
        started = time.monotonic()
        offsets = [head(url_b).headers["Upload-Offset"]]
        first_took = time.monotonic() - started
        offsets += [head(url_b).headers["Upload-Offset"] for _ in range(2)]
        assert offsets == [str(PIECE)] * 3, offsets
        assert first_took < QUICK.read_timeout - 0.2, first_took
        asked = [line for line in proxy.stalled if generation_key(3) in line]
        assert len(asked) == 1, proxy.stalled
        response = patch(url_b, PIECE, data[PIECE:])
        assert response.status_code == 204, response.text
        assert sha256(requests.get(url_b).content) == sha256(data)
    finally:
        proxy.close()


def test_a_lock_taken_from_a_dead_writer_skips_the_state_number_it_was_writing(
        minio, gunicorn_server, store):
    """The scale-out stall that was left at 5.9 s: the killed instance was committing the
    generation after the newest, the MinIO node coordinating that PUT died with it, and the
    writer that took the lock over tried the same number first and waited out its timeout
    (`QUICK`) before it skipped it. A lock taken from a writer that died in a request now
    starts its commits one number higher."""
    proxy, armed = proxy_stalling_one_key(minio)
    try:
        b, uid, data = written_to_generation_3(gunicorn_server, proxy, "dead-writer.bin")
        # The dead writer: its lock held past its lease, its commit of generation 4 stuck.
        assert write_generation(store.objects, uid, current_lock(store.objects, uid), "held",
                                "dead-holder", None, expires=time.time() - 10) is not None
        armed["key"] = "/" + generation_key(4)
        url_b = b.url + "/files/" + uid
        assert head(url_b).headers["Upload-Offset"] == str(2 * PIECE)
        started = time.monotonic()
        response = patch(url_b, 2 * PIECE, data[2 * PIECE:])
        took = time.monotonic() - started
        assert response.status_code == 204, response.text
        assert not [line for line in proxy.stalled if generation_key(4) in line], proxy.stalled
        assert took < QUICK.read_timeout, took
        names = stored_objects(store, uid)
        assert generation_key(4) not in names and generation_key(5) in names, sorted(names)
        assert head(url_b).headers["Upload-Offset"] == str(len(data))
        assert sha256(requests.get(url_b).content) == sha256(data)
    finally:
        proxy.close()


def test_a_download_asks_again_for_a_newest_state_this_process_marked_unreadable(
        minio, gunicorn_server, store):
    """The scale-out loss of 2026-12-03 (run 20 of 30): right after the node rejoined, the
    restarted instance could not read an upload's final generation for a moment, marked it
    unreadable for a minute, and answered every download of it from then on with a 503 (the
    generation before says unfinished) while the other instance served it. Now a download
    whose fallback state is unfinished asks MinIO again past the mark."""
    proxy, armed = proxy_stalling_one_key(minio)
    try:
        a = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint, lock_keep=0)
        b = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint, lock_keep=0)
        data = os.urandom(2 * PIECE)
        url_a = create_url(a.url, len(data), metadata(filename="marked.bin"))
        uid = upload_id(url_a)
        assert patch(url_a, 0, data[:PIECE]).status_code == 204
        assert patch(url_a, PIECE, data[PIECE:]).status_code == 204
        final = store.generations.newest(uid)
        assert store.generations.read(uid).completed
        url_b = b.url + "/files/" + uid
        armed["key"] = "/" + generation_key(final)  # unreadable for a moment, on b only
        assert requests.get(url_b).status_code == 503
        assert any(generation_key(final) in line for line in proxy.stalled), proxy.stalled
        armed["key"] = None
        time.sleep(QUICK.read_timeout + 0.5)  # b's hanging GETs have timed out: marked
        response = requests.get(url_b)
        assert response.status_code == 200, response.text
        assert sha256(response.content) == sha256(data)
    finally:
        proxy.close()


def test_pieces_this_process_put_are_folded_without_reading_them_back(minio, gunicorn_server,
                                                                      store):
    """The scale-out stall of 107 s (2026-12-03): a piece PUT that the node killed a moment
    later had coordinated was answered, and its key then stayed locked inside MinIO, so the
    next PATCH's GETs of it (to fold the chunk) each waited out the timeout for two minutes.
    The process that put a piece keeps its bytes for a while: here every GET of a piece
    would hang, and the chunk is folded all the same."""
    armed: dict = {"on": False}
    proxy = HeaderStrippingProxy(minio.endpoint,
                                 stall=lambda path: armed["on"] and "/.tus/pieces/" in path)
    try:
        app = gunicorn_server(chunk_size=1 * MIB, minio_endpoint=proxy.endpoint)
        data = os.urandom(4 * PIECE + 100)
        url = create_url(app.url, len(data), metadata(filename="pieces.bin"))
        uid = upload_id(url)
        for offset in range(0, 3 * PIECE, PIECE):
            assert patch(url, offset, data[offset:offset + PIECE]).status_code == 204
        assert len(store.get(uid).pieces) == 3
        armed["on"] = True  # the pieces' keys are stuck from now on
        response = patch(url, 3 * PIECE, data[3 * PIECE:])  # fills chunk 1: folds the pieces
        assert response.status_code == 204, response.text
        assert response.headers["Upload-Offset"] == str(len(data))
        assert not proxy.stalled, proxy.stalled
        armed["on"] = False
        assert "pieces.bin.part1of2" in stored_objects(store, uid)
        assert sha256(requests.get(url).content) == sha256(data)
    finally:
        proxy.close()
