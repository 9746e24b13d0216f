"""A complete chunk whose PUT gets no answer in time is stored as a stand-in piece, read in its
place, and copied to its own name once the upload is finished (storage/parts.py,
storage/stand_ins.py).

* `TUS_CHUNK_ANSWER_TIMEOUT=0` stores every complete chunk as a stand-in: every way to write
  (tus PATCHes across chunk boundaries, creation with upload, IETF, a deferred length declared
  at the offset, concatenation) downloads the right bytes while the state lists stand-ins, and
  afterwards the chunks are `<name>.partXofY` again with no piece left.
* A real late answer: a loopback proxy in front of MinIO holds MinIO's answer to the first
  chunk PUT past the timeout. MinIO stores that chunk anyway; the writer has already stored a
  stand-in and moved on, and the chunk left under its name is replaced by the copy.
* A piece PUT answered late is sent again under the writer's next piece name (its key may
  be one a dead MinIO node left locked); the first try, stored all the same, is listed by no
  generation and deleted when the upload finishes.
* A reader that started before the copy (it holds the state that lists the stand-in) still
  reads the right bytes after the stand-in piece is gone.
"""
from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests

from tus_server.storage.layout import generation_key
from tus_server.storage.store import UploadInfo

from .header_proxy import ArmedAnswerProxy
from .helpers import (
    MIB,
    TUS,
    chunk_objects,
    create,
    create_url,
    data_objects,
    head,
    metadata,
    patch,
    random_bytes,
    sha256,
    upload_id,
)
from .test_concat import create_final, create_partial
from .test_ietf import DRAFT

CHUNK = 256 * 1024


def wait_settled(store, uid: str, timeout: float = 30.0):
    """The upload's state once it lists no stand-in and the pieces are deleted (the background
    copy commits first, then deletes)."""
    deadline = time.monotonic() + timeout
    while True:
        info = store.get(uid)
        pieces = [n for n in data_objects(store, uid) if n.startswith(".tus/pieces/")]
        if (not info.stand_ins and not pieces) or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def download(url: str) -> bytes:
    response = requests.get(url)
    assert response.status_code == 200, response.text
    return response.content


def expected_chunks(name: str, size: int) -> dict[str, int]:
    total = -(-size // CHUNK)
    return {f"{name}.part{x}of{total}": min(CHUNK, size - (x - 1) * CHUNK)
            for x in range(1, total + 1)}


@pytest.fixture
def stand_in_server(make_server):
    return make_server(chunk_size=CHUNK, chunk_answer_timeout=0)


def test_tus_patches_store_stand_ins_read_in_place_then_settled(stand_in_server):
    server, store = stand_in_server, stand_in_server.store
    data = random_bytes(2 * CHUNK + 1000)
    url = create_url(server.url, len(data), metadata(filename="s.bin"))
    uid = upload_id(url)
    # Three PATCHes whose ends fall inside chunks: pieces first, stand-ins once chunks fill.
    for lo, hi in ((0, 1000), (1000, CHUNK + 5), (CHUNK + 5, 2 * CHUNK + 7)):
        response = patch(url, lo, data[lo:hi])
        assert response.status_code == 204, response.text
        assert response.headers["Upload-Offset"] == str(hi)
    info = store.get(uid)
    assert [s[0:2] for s in info.stand_ins] == [[0, CHUNK], [CHUNK, 2 * CHUNK]]
    assert chunk_objects(store, uid) == {}  # nothing under the chunk names yet
    response = patch(url, 2 * CHUNK + 7, data[2 * CHUNK + 7:])
    assert response.status_code == 204, response.text
    assert download(url) == data
    assert requests.head(url, headers=TUS).headers["Upload-Offset"] == str(len(data))

    info = wait_settled(store, uid)
    assert info.stand_ins == [] and info.completed and info.offset == len(data)
    assert data_objects(store, uid) == expected_chunks("s.bin", len(data))  # no piece left
    assert download(url) == data
    assert info.sha256 == sha256(data)


def test_creation_with_upload_and_ietf_upload_download_whole(stand_in_server):
    server, store = stand_in_server, stand_in_server.store
    data = random_bytes(3 * CHUNK - 3)
    response = create(server.url, len(data), metadata(filename="c.bin"),
                      headers={"Content-Type": "application/offset+octet-stream"}, data=data)
    assert response.status_code == 201, response.text
    assert response.headers["Upload-Offset"] == str(len(data))
    tus_url = response.headers["Location"]

    response = requests.post(server.url + "/files/", data=data,
                             headers={**DRAFT, "Upload-Complete": "?1"})
    assert response.status_code in (200, 201), response.text
    ietf_url = response.headers["Location"]
    for url in (tus_url, ietf_url):
        assert download(url) == data
        info = wait_settled(store, upload_id(url))
        assert info.stand_ins == [] and info.completed
        assert download(url) == data
        assert [n for n in data_objects(store, upload_id(url)) if n.startswith(".tus/")] == []


def test_deferred_length_declared_at_the_offset(stand_in_server):
    server, store = stand_in_server, stand_in_server.store
    data = random_bytes(2 * CHUNK + 321)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    uid = upload_id(url)
    response = patch(url, 0, data)
    assert response.status_code == 204, response.text
    info = store.get(uid)
    assert info.length is None and len(info.stand_ins) == 2 and len(info.pieces) == 1
    # The length is declared equal to the offset: the last chunk is folded from its piece.
    response = patch(url, len(data), b"", headers={"Upload-Length": str(len(data))})
    assert response.status_code == 204, response.text
    assert download(url) == data
    info = wait_settled(store, uid)
    assert info.stand_ins == [] and info.length == len(data)
    assert data_objects(store, uid) == expected_chunks("upload", len(data))
    assert download(url) == data


def test_concatenation_of_partials_with_stand_ins(stand_in_server):
    server = stand_in_server
    parts = [random_bytes(CHUNK + 17), random_bytes(2 * CHUNK)]
    urls = [create_partial(server.url, part) for part in parts]
    response = create_final(server.url, urls)
    assert response.status_code == 201, response.text
    assert download(response.headers["Location"]) == b"".join(parts)


def test_a_reader_holding_the_state_before_the_copy_reads_the_chunk_name(stand_in_server):
    server, store = stand_in_server, stand_in_server.store
    data = random_bytes(2 * CHUNK)
    url = create_url(server.url, len(data))
    uid = upload_id(url)
    response = patch(url, 0, data)
    assert response.status_code == 204, response.text
    after = wait_settled(store, uid)
    assert after.stand_ins == [] and after.completed
    # The generation before the copy's: the state a download that started earlier holds.
    raw, _ = store.read_object(uid, generation_key(after.version - 1))
    before = UploadInfo.from_dict(json.loads(raw))
    assert len(before.stand_ins) == 2 and before.completed
    assert all(s[2] not in data_objects(store, uid) for s in before.stand_ins)
    assert b"".join(store.open(uid, 0, len(data), info=before)) == data


# ----------------------------------------------------------------- a real late answer
CHUNK_PUT = re.compile(rb"^PUT [^ ]*\.part\d+of\d+(\?[^ ]*)? HTTP/1\.1")
PIECE_PUT = re.compile(rb"^PUT [^ ]*/\.tus/pieces/[^ ?]+(\?[^ ]*)? HTTP/1\.1")


class LateAnswerProxy(ArmedAnswerProxy):
    """A loopback proxy in front of MinIO. Once armed, MinIO's answer to the next chunk PUT (or
    PUT whose request line matches `pattern`) is held for `hold` seconds (the request itself
    goes through at once, so MinIO stores the object); `held` counts those answers."""

    def __init__(self, target: str, hold: float, pattern: re.Pattern = CHUNK_PUT):
        self.hold = hold
        super().__init__(target, pattern)

    @property
    def held(self) -> int:
        return len(self.marked_lines)

    @property
    def held_lines(self) -> list[bytes]:  # the request lines of the held answers
        return self.marked_lines

    def on_marked_answer(self, upstream: socket.socket) -> None:
        time.sleep(self.hold)  # the client has given up waiting by now


HOLD = 4.0  # seconds MinIO's answer is held (the writer waits 0.5 s for it)


def test_a_chunk_answered_late_gets_a_stand_in_and_is_replaced_by_the_copy(minio, make_server):
    proxy = LateAnswerProxy(minio.endpoint, hold=HOLD)
    try:
        server = make_server(chunk_size=CHUNK, chunk_answer_timeout=0.5,
                             minio_endpoint=proxy.endpoint)
        store = server.store
        data = random_bytes(2 * CHUNK + 10)
        url = create_url(server.url, len(data), metadata(filename="late.bin"))
        uid = upload_id(url)
        proxy.armed = 1
        started = time.monotonic()
        response = patch(url, 0, data[:2 * CHUNK])
        took = time.monotonic() - started
        assert response.status_code == 204, response.text
        assert response.headers["Upload-Offset"] == str(2 * CHUNK)
        assert proxy.held == 1
        assert took < HOLD, f"the PATCH waited out MinIO's late answer ({took:.1f} s)"
        # The first chunk PUT to reach the proxy (the two chunks are put side by side: under
        # load chunk 2's may come first).
        index = int(re.search(rb"\.part(\d+)of3", proxy.held_lines[0]).group(1))
        info = store.get(uid)
        assert [s[0] for s in info.stand_ins] == [(index - 1) * CHUNK]  # that chunk only
        # MinIO stored that chunk under its own name too (only its answer was late).
        deadline = time.monotonic() + 10
        while f"late.bin.part{index}of3" not in chunk_objects(store, uid):
            assert time.monotonic() < deadline, chunk_objects(store, uid)
            time.sleep(0.1)

        response = patch(url, 2 * CHUNK, data[2 * CHUNK:])
        assert response.status_code == 204, response.text
        assert head(url).headers["Upload-Offset"] == str(len(data))
        assert download(url) == data
        info = wait_settled(store, uid)
        assert info.stand_ins == [] and info.completed
        assert data_objects(store, uid) == expected_chunks("late.bin", len(data))
        assert download(url) == data
    finally:
        proxy.close()


def test_a_piece_answered_late_is_put_again_under_the_next_name(minio, make_server):
    proxy = LateAnswerProxy(minio.endpoint, hold=HOLD, pattern=PIECE_PUT)
    try:
        server = make_server(chunk_size=CHUNK, chunk_answer_timeout=0.5,
                             minio_endpoint=proxy.endpoint)
        store = server.store
        data = random_bytes(CHUNK + 1000)
        url = create_url(server.url, len(data), metadata(filename="late-piece.bin"))
        uid = upload_id(url)
        proxy.armed = 1
        started = time.monotonic()
        response = patch(url, 0, data[:1000])  # less than a chunk: a piece
        took = time.monotonic() - started
        assert response.status_code == 204, response.text
        assert response.headers["Upload-Offset"] == "1000"
        assert proxy.held == 1
        assert took < HOLD, f"the PATCH waited out MinIO's late answer ({took:.1f} s)"
        first = re.search(rb"/(\.tus/pieces/[^ ?]+)", proxy.held_lines[0]).group(1).decode()
        assert first.endswith("-1")
        (piece,) = store.get(uid).pieces
        assert piece[:2] == [0, 1000] and piece[2] == first[:-2] + "-2"
        # MinIO stored the first try too (only its answer was late): garbage until the end.
        deadline = time.monotonic() + 10
        while first not in data_objects(store, uid):
            assert time.monotonic() < deadline, data_objects(store, uid)
            time.sleep(0.1)

        response = patch(url, 1000, data[1000:])
        assert response.status_code == 204, response.text
        assert download(url) == data
        deadline = time.monotonic() + 10
        while data_objects(store, uid) != expected_chunks("late-piece.bin", len(data)):
            assert time.monotonic() < deadline, data_objects(store, uid)
            time.sleep(0.1)
        assert download(url) == data
    finally:
        proxy.close()
