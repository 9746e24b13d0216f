"""deploy/nginx-minio.conf: a PUT that one node refuses, or that a node stored and died before
answering, goes to another node at once and counts once.

nginx, from the deploy template, in front of two ways to one real MinIO: a loopback proxy (a
node in trouble) and MinIO itself.
* The proxy answers every PUT of a state or lock generation or a heartbeat, or of a chunk or a
  piece, with MinIO's own 503 SlowDownWrite (a node short of drives after another died): each
  reaches MinIO once through the second way, within the same request, and the app sends none
  of them twice.
* The proxy forwards one PUT of each kind to MinIO (which stores it) and then closes the
  connection unanswered (a node killed between its commit and its answer): nginx sends it on,
  the second try finds the first (412), and the app counts it as its own; the upload's bytes
  and offset are right.
* Without nginx: the proxy stores one PUT of each kind and answers it 502 as a balancer with
  no node left would; the app sends it again, and the second try counts the first.
"""
from __future__ import annotations

import io
import itertools
import json
import re
import socket
from typing import Optional

import pytest

from tus_server.storage.layout import generation_key
from tus_server.storage.minio_backend import MinioStore
from tus_server.storage.store import UploadInfo, WriteFenced, new_upload_id

from .cluster import Nginx
from .header_proxy import ArmedAnswerProxy
from .test_refused_writes import RefusingProxy

SMALL_PUT = re.compile(rb"^PUT /[^ ]*/(\.tus/(info|lock)|instances/[0-9a-f]+)/\d+[ ?]")
CHUNK_PUT = re.compile(rb"^PUT /[^ ]*\.part\d+of(\d+|_)[ ?]")
PIECE_PUT = re.compile(rb"^PUT /[^ ]*/\.tus/pieces/[^ ?/]+[ ?]")
STATE_PUT = re.compile(rb"^PUT /[^ ]*/\.tus/info/\d+[ ?]")
LOCK_PUT = re.compile(rb"^PUT /[^ ]*/\.tus/lock/\d+[ ?]")
KIB = 1024
CHUNK = 64 * KIB


class DyingNodeProxy(ArmedAnswerProxy):
    """Forwards everything to MinIO; once armed, the next PUT whose request line matches
    `pattern` is stored by MinIO, and its answer is never sent: the connection is closed, as a
    node SIGKILLed right after its commit would. `died_on` holds those request lines."""

    def __init__(self, target: str, pattern: re.Pattern, answer: Optional[bytes] = None):
        self.answer = answer  # sent instead of MinIO's answer before the close, if given
        self._clients: dict[socket.socket, socket.socket] = {}
        super().__init__(target, pattern)

    @property
    def died_on(self) -> list[bytes]:
        return self.marked_lines

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        self._clients[source] = sink  # MinIO's side of a connection, and the client's
        super()._pipe(source, sink)

    def on_marked_answer(self, upstream: socket.socket) -> None:
        if self.answer is not None:
            self._clients[upstream].sendall(self.answer)
        raise OSError("the node died before it answered")  # both sockets are closed


# nginx's answer when no node could be reached (no S3 error code in it).
BALANCER_502 = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 13"
                b"\r\n\r\nBad Gateway\r\n")


@pytest.fixture
def node_in_trouble(minio, tmp_path):
    """`start(proxy)`: nginx in front of `proxy` (then MinIO itself); stopped at the end."""
    started = []

    def start(*proxies, minio_too: bool = True):
        nodes = [proxy.endpoint for proxy in proxies] + ([minio.endpoint] if minio_too else [])
        nginx = Nginx("minio", tmp_path, nodes).start()
        started.append((proxies, nginx))
        return nginx

    yield start
    for proxies, nginx in started:
        nginx.stop()
        for proxy in proxies:
            proxy.close()


@pytest.fixture
def refusing_node(minio, node_in_trouble):
    proxy = RefusingProxy(minio.endpoint, SMALL_PUT)
    proxy.refuse = 10 ** 6  # every small PUT that reaches it
    return proxy, node_in_trouble(proxy)


def store_behind(nginx: Nginx, settings, **overrides) -> MinioStore:
    return MinioStore(settings.with_overrides(minio_endpoint=nginx.address,
                                              heartbeat_interval=0, **overrides))


def access_lines(nginx: Nginx) -> list[str]:
    return (nginx.run_dir / "nginx-minio-access.log").read_text().splitlines()


def test_a_refused_state_or_lock_put_is_sent_to_the_next_node_by_nginx(refusing_node, settings):
    proxy, nginx = refusing_node
    store = store_behind(nginx, settings)
    info = store.create(UploadInfo(id=new_upload_id(), length=8 * KIB, filename="small.bin"))
    data = bytes(range(256)) * 32
    for n in range(8):
        store.write(info.id, n * KIB, io.BytesIO(data[n * KIB:(n + 1) * KIB]), KIB)
    assert store.get(info.id).offset == 8 * KIB
    assert b"".join(store.open(info.id, 0, 8 * KIB)) == data

    small = [line for line in access_lines(nginx) if '"PUT ' in line and
             re.search(r"/\.tus/(info|lock)/\d+ ", line)]
    keys = [line.split('"')[1].split()[1] for line in small]
    assert len(keys) == len(set(keys)), "the app sent a small PUT twice"
    assert all(" 200 " in line for line in small), small
    rerouted = [line for line in small if "status=503, 200" in line]
    assert proxy.refused >= 1 and len(rerouted) == proxy.refused, (proxy.refused, small)


def test_a_commit_that_finds_its_own_first_try_counts_it(store):
    """A balancer sent the state PUT on after the node that stored it died: the second try
    finds the very bytes it sends (412), and the commit counts them as its own."""
    info = store.create(UploadInfo(id=new_upload_id(), length=KIB, filename="own.bin"))
    info.writer = "writer-token"
    first_try = json.dumps(info.to_dict(), separators=(",", ":")).encode()
    target = info.version + 1
    assert store.objects.conditional_put(info.id, generation_key(target), first_try,
                                         if_none_match=True)
    assert store.generations.commit(info, info.version) == target
    other = UploadInfo.from_dict(json.loads(first_try))
    other.writer, other.version = "another-writer", info.version - 1
    with pytest.raises(WriteFenced):
        store.generations.commit(other, target - 1)


def put_lines(nginx: Nginx, pattern: re.Pattern) -> list[str]:
    """The access log lines of the PUTs whose request line matches `pattern`."""
    return [line for line in access_lines(nginx) if '"PUT ' in line and
            pattern.match(line.split('"')[1].encode() + b" ")]


def test_a_refused_chunk_or_piece_put_is_sent_to_the_next_node_by_nginx(minio, node_in_trouble,
                                                                         settings):
    data_put = re.compile(CHUNK_PUT.pattern + b"|" + PIECE_PUT.pattern)
    proxy = RefusingProxy(minio.endpoint, data_put)
    proxy.refuse = 10 ** 6
    nginx = node_in_trouble(proxy)
    store = store_behind(nginx, settings)
    data = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
    info = store.create(UploadInfo(id=new_upload_id(), length=len(data), filename="data.bin",
                                   chunk_size=CHUNK))
    # Whole chunks, then a piece (the tail, short of a chunk), over six writes.
    cuts = [0, CHUNK, CHUNK + 10, 2 * CHUNK, 3 * CHUNK, 3 * CHUNK + 2, len(data)]
    for start, end in zip(cuts, cuts[1:]):
        store.write(info.id, start, io.BytesIO(data[start:end]), end - start)
    assert store.get(info.id).offset == len(data)
    assert b"".join(store.open(info.id, 0, len(data))) == data

    lines = put_lines(nginx, data_put)
    keys = [line.split('"')[1].split()[1] for line in lines]
    assert len(keys) == len(set(keys)), "the app sent a chunk or piece PUT twice"
    assert any(".part" in key for key in keys) and any("/.tus/pieces/" in key for key in keys)
    assert all(" 200 " in line for line in lines), lines
    rerouted = [line for line in lines if "status=503, 200" in line]
    assert proxy.refused >= 1 and len(rerouted) == proxy.refused, (proxy.refused, lines)


@pytest.mark.parametrize("kind", ["chunk", "piece", "state", "lock"])
def test_a_put_whose_node_died_after_storing_it_counts_once(minio, node_in_trouble, settings,
                                                            kind):
    pattern = {"chunk": CHUNK_PUT, "piece": PIECE_PUT, "state": STATE_PUT,
               "lock": LOCK_PUT}[kind]
    proxy = DyingNodeProxy(minio.endpoint, pattern)
    nginx = node_in_trouble(proxy)
    store = store_behind(nginx, settings, lock_keep=0.0)  # a lock taken by every write
    data = bytes(range(251)) * (8 * CHUNK // 251)
    info = store.create(UploadInfo(id=new_upload_id(), length=len(data), filename="died.bin",
                                   chunk_size=CHUNK))
    proxy.armed = 1
    # Writes of a chunk and a bit (a whole chunk and a piece), then of a bit (a piece only),
    # until one PUT of this kind went to the dying node. nginx's round robin sends every other
    # chunk or piece PUT there: writes of a chunk and a bit alone would send every piece to the
    # same node (chunk, piece, chunk, piece), so which node depended on what came before.
    steps, offset = itertools.cycle([CHUNK + CHUNK // 4, CHUNK // 4]), 0
    while offset < len(data):
        end = min(offset + next(steps), len(data))
        written = store.write(info.id, offset, io.BytesIO(data[offset:end]), end - offset)
        assert written.info.offset == end, f"write at {offset}, {kind} dropped"
        offset = end
    assert len(proxy.died_on) == 1, proxy.died_on
    assert store.get(info.id).offset == len(data)
    assert b"".join(store.open(info.id, 0, len(data))) == data
    # nginx sent the dropped PUT on, and its second try found the first (412).
    key = proxy.died_on[0].split()[1].decode().split("?")[0]
    tries = [line for line in put_lines(nginx, pattern) if f" {key}" in line]
    assert any("status=502, 412" in line for line in tries), tries


@pytest.mark.parametrize("kind", ["chunk", "piece", "state"])
def test_a_put_the_balancer_answered_502_is_sent_again_and_its_stored_first_try_counts(
        minio, settings, kind):
    pattern = {"chunk": CHUNK_PUT, "piece": PIECE_PUT, "state": STATE_PUT}[kind]
    proxy = DyingNodeProxy(minio.endpoint, pattern, answer=BALANCER_502)
    try:
        store = MinioStore(settings.with_overrides(minio_endpoint=proxy.endpoint,
                                                   heartbeat_interval=0))
        data = bytes(range(253)) * (2 * CHUNK // 253)
        info = store.create(UploadInfo(id=new_upload_id(), length=len(data),
                                       filename="gateway.bin", chunk_size=CHUNK))
        proxy.armed = 1
        middle = CHUNK + CHUNK // 3  # a whole chunk, then a piece
        for start, end in ((0, middle), (middle, len(data))):
            written = store.write(info.id, start, io.BytesIO(data[start:end]), end - start)
            assert written.info.offset == end
        assert len(proxy.died_on) == 1, proxy.died_on
        assert store.get(info.id).offset == len(data)
        assert b"".join(store.open(info.id, 0, len(data))) == data
    finally:
        proxy.close()
