"""A PUT that a MinIO node refuses for want of drives (503 SlowDownWrite) is sent again.

For seconds after one node of a distributed MinIO dies or comes back, another node may refuse
every write while the rest take them (bench/node_loss_probe.py). A loopback proxy in front of
a real MinIO answers chosen PUTs with MinIO's own 503 SlowDownWrite instead of forwarding them:
* a chunk PUT refused twice is sent a third time and lands under its own name (no stand-in);
* a state generation refused twice likewise: the PATCH answers 204 at the right offset;
* a state generation refused on every try gives the client 503 with Retry-After, and the
  client's retry (HEAD, then PATCH) finishes the upload with the right bytes;
* a 503 with another code (a node that is starting) is not sent again by this rule.
"""
from __future__ import annotations

import re
import threading
from typing import Optional

import pytest

from tus_server.storage.generations import UNANSWERED_SKIPS
from tus_server.storage.layout import GENERATION_PREFIX, generation_number
from tus_server.storage.objects import REFUSED_PAUSES
from tus_server.storage.parts import written_pieces

from .header_proxy import HeaderStrippingProxy
from .helpers import (
    chunk_objects,
    create_url,
    head,
    metadata,
    patch,
    random_bytes,
    stored_objects,
    upload_id,
)
from .test_stand_ins import download

CHUNK = 256 * 1024
CHUNK_PUT = re.compile(rb"^PUT /[^ ]*\.part\d+of\d+ ")
STATE_PUT = re.compile(rb"^PUT /[^ ]*/\.tus/info/\d+ ")


def minio_503(code: str) -> bytes:
    """A 503 as MinIO words it."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            "<Message>Resource requested is unwritable, please reduce your request rate"
            "</Message></Error>").encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
            b"Retry-After: 60\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class RefusingProxy(HeaderStrippingProxy):
    """Answers the next `refuse` requests whose request line matches `pattern` with a 503
    `code` (or with `answer`, when given) instead of forwarding them; `refused` counts them,
    `forwarded` the matching requests that went on to MinIO."""

    def __init__(self, target: str, pattern: re.Pattern, code: str = "SlowDownWrite",
                 answer: Optional[bytes] = None):
        self.pattern = pattern
        self.code = code
        self.answer = answer
        self.refuse = 0
        self.refused = 0
        self.forwarded = 0
        self._count_guard = threading.Lock()
        super().__init__(target)

    def answer_instead(self, request_line: bytes):
        if not self.pattern.match(request_line):
            return None
        with self._count_guard:
            if self.refuse <= 0:
                self.forwarded += 1
                return None
            self.refuse -= 1
            self.refused += 1
        return self.answer if self.answer is not None else minio_503(self.code)


@pytest.fixture
def refusing(minio, make_server):
    proxies: list[RefusingProxy] = []

    def start(pattern: re.Pattern, code: str = "SlowDownWrite"):
        proxy = RefusingProxy(minio.endpoint, pattern, code)
        proxies.append(proxy)
        return proxy, make_server(chunk_size=CHUNK, minio_endpoint=proxy.endpoint)

    yield start
    for proxy in proxies:
        proxy.close()


def test_a_chunk_put_refused_twice_is_sent_again_and_stored_under_its_own_name(refusing):
    proxy, server = refusing(CHUNK_PUT)
    data = random_bytes(2 * CHUNK + 7)
    url = create_url(server.url, len(data), metadata(filename="refused.bin"))
    uid = upload_id(url)
    proxy.refuse = 2
    response = patch(url, 0, data[:CHUNK])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(CHUNK)
    assert (proxy.refused, proxy.forwarded) == (2, 1)
    info = server.store.get(uid)
    assert info.stand_ins == []  # the third try landed: no stand-in was needed
    assert chunk_objects(server.store, uid) == {"refused.bin.part1of3": CHUNK}
    response = patch(url, CHUNK, data[CHUNK:])
    assert response.status_code == 204, response.text
    assert download(url) == data


def test_a_state_generation_refused_twice_is_sent_again(refusing):
    proxy, server = refusing(STATE_PUT)
    data = random_bytes(CHUNK + 100)
    url = create_url(server.url, len(data), metadata(filename="state.bin"))
    proxy.refuse = 2
    response = patch(url, 0, data[:1000])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == "1000"
    assert proxy.refused == 2
    assert head(url).headers["Upload-Offset"] == "1000"
    response = patch(url, 1000, data[1000:])
    assert response.status_code == 204, response.text
    assert download(url) == data


def test_a_state_generation_refused_on_every_try_is_a_503_and_the_retry_finishes(refusing):
    proxy, server = refusing(STATE_PUT)
    data = random_bytes(CHUNK + 100)
    url = create_url(server.url, len(data), metadata(filename="gave-up.bin"))
    # Every try at each number the commit may use (it skips a refused one, twice).
    tries = (len(REFUSED_PAUSES) + 1) * (UNANSWERED_SKIPS + 1)
    proxy.refuse = tries
    response = patch(url, 0, data[:CHUNK])
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert proxy.refused == tries
    # What the client does next: ask for the offset, send the rest from there.
    offset = int(head(url).headers["Upload-Offset"])
    assert offset in (0, CHUNK)  # the chunk may be stored; the offset never passes the bytes
    response = patch(url, offset, data[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(len(data))
    assert download(url) == data


def test_a_generation_refused_on_every_try_is_skipped_for_the_next_number(refusing):
    """A generation PUT that never got in (refused on every try; or no answer: its key may be
    locked inside MinIO for minutes) is not tried again: the commit writes the next number."""
    proxy, server = refusing(STATE_PUT)
    data = random_bytes(CHUNK + 100)
    url = create_url(server.url, len(data), metadata(filename="skipped.bin"))
    uid = upload_id(url)
    tries = len(REFUSED_PAUSES) + 1
    proxy.refuse, proxy.forwarded = tries, 0
    response = patch(url, 0, data[:1000])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == "1000"
    assert (proxy.refused, proxy.forwarded) == (tries, 1)
    numbers = sorted(generation_number(name)
                     for name in stored_objects(server.store, uid)
                     if name.startswith(GENERATION_PREFIX))
    assert numbers == [1, 3], numbers  # the creation's, then the one after the skipped 2
    response = patch(url, 1000, data[1000:])
    assert response.status_code == 204, response.text
    assert download(url) == data


def test_a_503_with_another_code_is_not_sent_again(refusing):
    proxy, server = refusing(STATE_PUT, code="XMinioServerNotInitialized")
    data = random_bytes(1000)
    url = create_url(server.url, len(data), metadata(filename="other.bin"))
    uid = upload_id(url)
    # The creation wrote generation 1; the PATCH's commit is refused once at 2 (and not sent
    # again under 2 by the refused-write rule), then written as 3.
    proxy.refuse, proxy.forwarded = 1, 0
    response = patch(url, 0, data)
    assert response.status_code == 204, response.text
    assert (proxy.refused, proxy.forwarded) == (1, 1)
    assert sorted(generation_number(name) for name in stored_objects(server.store, uid)
                  if name.startswith(GENERATION_PREFIX)) == [1, 3]
    # Refused at every number the commit may use: the client gets 503, and its retry works.
    other = create_url(server.url, len(data), metadata(filename="other2.bin"))
    proxy.refuse, proxy.refused = UNANSWERED_SKIPS + 1, 0
    response = patch(other, 0, data)
    assert response.status_code == 503, response.text
    assert proxy.refused == UNANSWERED_SKIPS + 1
    response = patch(other, 0, data)
    assert response.status_code == 204, response.text
    assert download(url) == data and download(other) == data


PIECE_GET = re.compile(rb"^GET /[^ ]*/\.tus/pieces/")


def test_a_piece_read_back_that_a_node_refuses_for_a_while_is_read_again(refusing):
    """A PATCH that fills the chunk reads the earlier PATCH's piece back; a node that just
    rejoined may answer 503 for seconds. The piece is read again (with pauses) before the
    PATCH gives up, so the client sees a 204, not a 503 and a retry."""
    proxy, server = refusing(PIECE_GET)
    data = random_bytes(2 * CHUNK)
    url = create_url(server.url, len(data), metadata(filename="piece.bin"))
    assert patch(url, 0, data[:1000]).status_code == 204  # stored as a piece
    written_pieces.clear()  # read back as a process that did not put it
    proxy.refuse = 5  # minio-py tries each GET 3 times: the second read's retry gets it
    response = patch(url, 1000, data[1000:CHUNK + 10])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(CHUNK + 10)
    assert proxy.refused == 5 and proxy.forwarded >= 1
    assert patch(url, CHUNK + 10, data[CHUNK + 10:]).status_code == 204
    assert download(url) == data


def test_a_piece_that_stays_unreadable_is_a_503_and_the_retry_finishes(refusing):
    proxy, server = refusing(PIECE_GET)
    data = random_bytes(2 * CHUNK)
    url = create_url(server.url, len(data), metadata(filename="piece-gone.bin"))
    assert patch(url, 0, data[:1000]).status_code == 204
    written_pieces.clear()  # read back as a process that did not put it
    proxy.refuse = 1000
    response = patch(url, 1000, data[1000:CHUNK + 10])
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert proxy.refused >= 5 and proxy.forwarded == 0  # every try was refused
    proxy.refuse = 0
    offset = int(head(url).headers["Upload-Offset"])
    assert offset == 1000
    assert patch(url, offset, data[offset:]).status_code == 204
    assert download(url) == data
