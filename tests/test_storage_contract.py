"""The storage contract's bookkeeping: state generations and pieces stay few, tiny PATCHes
cost MinIO only their own bytes, uploads stored as `.tus/info.json` by earlier versions still
read and resume, and a stalled writer's commit into a pruned generation changes nothing."""
from __future__ import annotations

import collections
import io
import json
import os
import time

import pytest
import requests

from tus_server.storage import instances
from tus_server.storage.layout import GENERATION_PREFIX, INFO_NAME, PIECE_PREFIX, generation_key
from tus_server.storage.objects import CRC32C_HEADER, crc32c_b64
from tus_server.storage.store import UploadInfo, UploadTakenOver, new_upload_id
from tus_server.storage.writer import ChunkWriter

from .helpers import MIB, create_url, head, metadata, patch, sha256, stored_objects, upload_id
from .request_counter import MinioRequests

KIB = 1024


def _kinds(store, uid: str) -> collections.Counter:
    names = stored_objects(store, uid)
    return collections.Counter("generation" if n.startswith(GENERATION_PREFIX) else
                               "piece" if n.startswith(PIECE_PREFIX) else n for n in names)


def test_generations_and_pieces_stay_few(make_server, store):
    server = make_server(chunk_size=64 * KIB)
    data = os.urandom(100 * KIB)
    url = create_url(server.url, len(data), metadata(filename="few.bin"))
    uid = upload_id(url)
    offset = 0
    for size in [1 * KIB] * 40 + [3] * 20:
        assert patch(url, offset, data[offset:offset + size]).status_code == 204
        offset += size
        kinds = _kinds(store, uid)
        assert kinds["generation"] <= 6, kinds  # pruned in batches, two always kept
        assert kinds["piece"] <= 16, kinds  # merged: O(log C) per chunk, plus a batch of garbage
    assert patch(url, offset, data[offset:]).status_code == 204
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)
    kinds = _kinds(store, uid)
    assert kinds["piece"] == 0 and kinds["few.bin.part1of2"] == 1 and kinds["few.bin.part2of2"] == 1


def test_tiny_patches_put_only_their_own_bytes(server, store):
    """The audit's figure: after 4 MiB, 40 PATCHes of 1 byte each used to re-PUT the 4 MiB
    chunk head every time (168 MB); now each stores its byte and a small state object."""
    data = os.urandom(4 * MIB + 40)
    url = create_url(server.url, len(data) + 1, metadata(filename="tiny.bin"))
    assert patch(url, 0, data[:4 * MIB]).status_code == 204
    with MinioRequests(server.store) as counter:
        for offset in range(4 * MIB, len(data)):
            assert patch(url, offset, data[offset:offset + 1]).status_code == 204
    sent = counter.sent
    assert sent["PUT"] < 40 * 4 * KIB, sent  # about 1.2 KB each: the byte and a generation
    assert head(url).headers["Upload-Offset"] == str(len(data))
    assert patch(url, len(data), b"!").status_code == 204
    assert sha256(requests.get(url).content) == sha256(data + b"!")


def _as_earlier_versions_stored_it(store, uid: str, offset: int, chunks: dict) -> None:
    """Rewrite an upload as earlier versions kept it: the state in `.tus/info.json` (rewritten
    in place) and the head of the current chunk in the chunk object itself."""
    bucket, prefix = store._location(uid)
    [generation] = [n for n in stored_objects(store, uid) if n.startswith(GENERATION_PREFIX)]
    state = json.loads(store.client.get_object(bucket, prefix + generation).read())
    objects = {INFO_NAME: json.dumps({**state, "offset": offset}).encode(), **chunks}
    for name, body in objects.items():
        headers = {CRC32C_HEADER: crc32c_b64(body), "Content-Length": str(len(body))}
        assert store.objects.put_if(uid, prefix + name, body, headers) is not None
    store.objects.remove_names(uid, [generation])


def test_an_upload_written_by_earlier_versions_reads_and_resumes(make_server, store):
    size = 64 * KIB
    server = make_server(chunk_size=size)
    data = os.urandom(3 * size)
    url = create_url(server.url, len(data), metadata(filename="old.bin"))
    uid = upload_id(url)
    offset = size + 5000  # chunk 1 whole, the head of chunk 2 in `old.bin.part2of3`
    _as_earlier_versions_stored_it(store, uid, offset, {"old.bin.part1of3": data[:size],
                                                        "old.bin.part2of3": data[size:offset]})
    assert head(url).headers["Upload-Offset"] == str(offset)  # read as generation 0
    assert patch(url, offset, data[offset:offset + 100]).status_code == 204
    assert any(n.startswith(GENERATION_PREFIX) for n in stored_objects(store, uid))
    assert patch(url, offset + 100, data[offset + 100:]).status_code == 204
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


def test_a_deferred_upload_of_earlier_versions_finishes_cut_at_the_offset(make_server, store):
    """Earlier versions left bytes past the offset in the head chunk (a PATCH whose checksum
    failed); declaring the length now takes only the bytes up to the offset."""
    server = make_server(chunk_size=64 * KIB)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"},
                     meta=metadata(filename="old.bin"))
    uid = upload_id(url)
    data, unverified = os.urandom(5000), os.urandom(3000)
    _as_earlier_versions_stored_it(store, uid, len(data), {"old.bin.part1of_": data + unverified})
    response = patch(url, len(data), b"", {"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    got = requests.get(url)
    assert got.status_code == 200 and sha256(got.content) == sha256(data)


class _HeldLease:
    """The lease as the writer sees it (a real one would have been lost to the other writer
    meanwhile; here the point is what the generations alone decide)."""

    stop_reason = None
    on_stop = None


class _NamedLease(_HeldLease):
    """A lock that names an instance, whose heartbeat may or may not be fresh."""

    def __init__(self, fresh: bool):
        self.fresh = fresh

    def unchallenged(self) -> bool:
        return self.fresh


@pytest.mark.parametrize("fresh", [True, False])
def test_a_short_request_checks_its_commit_once_its_heartbeat_could_be_stale(store, fresh):
    """A request that took well under half the lease, whose lock names its instance: when
    that instance's heartbeat could look dead to others (it did not land for the heartbeat
    timeout), somebody may have taken over and pruned, so the end of the request LISTs and
    finds its commit below the newest (taken over); with a fresh heartbeat nobody can have,
    and no LIST is asked."""
    info = store.create(UploadInfo(id=new_upload_id(), length=4 * KIB, filename="beat.bin"))
    uid = info.id
    store.write(uid, 0, io.BytesIO(b"a" * 100), 100)
    stale = store.get(uid)
    for n in range(6):
        store.write(uid, 100 + 10 * n, io.BytesIO(b"b" * 10), 10)
    writer = ChunkWriter(store.objects, store.generations, store.settings, stale,
                         _NamedLease(fresh), None, None)
    if fresh:
        writer.run(io.BytesIO(b"x" * 500), 4 * KIB - 100)  # not checked: answers 204
        assert writer.commits.written == [3]
    else:
        with pytest.raises(UploadTakenOver):
            writer.run(io.BytesIO(b"x" * 500), 4 * KIB - 100)
    current = store.get(uid)
    assert current.version == 8 and current.offset == 160


def test_a_lease_is_unchallenged_only_while_its_heartbeat_is_fresh(store):
    """The real lease of a request: unchallenged while the process's heartbeat lands; once
    its newest landed beat is as old as the heartbeat timeout (less the clock margin), others
    may find the instance dead, and it no longer is."""
    info = store.create(UploadInfo(id=new_upload_id(), length=KIB, filename="fresh.bin"))
    with store.locked(info.id) as lease:
        assert lease.instance is not None and lease.unchallenged() is True
        beat = next(b for b in instances._beats.values() if b.id == lease.instance)
        room = store.settings.heartbeat_timeout - instances.CLOCK_MARGIN
        assert lease.unchallenged(now=beat.landed_sent + room - 0.01) is True
        # No beat sent until now lands in time: a beat sent later is not, for this check.
        assert lease.unchallenged(now=time.monotonic() + room + 0.05) is False


def test_a_stalled_writer_whose_generation_was_pruned_answers_taken_over(store):
    """Writer A read generation 2 and stalled past its lease; B committed up to generation 8,
    which pruned 3. A's commit into 3 then succeeds but lies below B's: A's check at the end of
    its request finds that out, deletes it, and answers as taken over; B's state stands."""
    info = store.create(UploadInfo(id=new_upload_id(), length=4 * KIB, filename="stale.bin"))
    uid = info.id
    store.write(uid, 0, io.BytesIO(b"a" * 100), 100)
    stale = store.get(uid)
    assert stale.version == 2
    for n in range(6):  # generations 3 to 8, each a writer of its own
        store.write(uid, 100 + 10 * n, io.BytesIO(b"b" * 10), 10)
    assert store.get(uid).version == 8
    assert generation_key(3) not in stored_objects(store, uid)

    writer = ChunkWriter(store.objects, store.generations, store.settings, stale, _HeldLease(),
                         None, None)
    writer.commits.started -= store.settings.lock_lease  # it stalled
    with pytest.raises(UploadTakenOver):
        writer.run(io.BytesIO(b"x" * 500), 4 * KIB - 100)
    assert writer.commits.written == [3]
    assert generation_key(3) not in stored_objects(store, uid)
    current = store.get(uid)
    assert current.version == 8 and current.offset == 160
    store.write(uid, 160, io.BytesIO(b"c" * (4 * KIB - 160)), 4 * KIB - 160)
    assert b"".join(store.open(uid, 0, 4 * KIB)) == b"a" * 100 + b"b" * 60 + b"c" * (4 * KIB - 160)
