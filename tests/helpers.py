"""Small helpers shared by the tests: tus headers, metadata, digests, stored objects."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from typing import Optional

import requests
from werkzeug.serving import make_server

from tus_server.storage import chores
from tus_server.storage.layout import chunk_count, chunk_key
from tus_server.storage.minio_backend import MinioStore

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
MIB = 1024 * 1024


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def metadata(**values: Optional[str]) -> str:
    return ",".join(k if v is None else f"{k} {b64(v)}" for k, v in values.items())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(size: int, seed: int = 0) -> bytes:
    return os.urandom(size)


def create(base_url: str, length: Optional[int] = None, meta: Optional[str] = None,
           headers: Optional[dict] = None, **kwargs) -> requests.Response:
    h = dict(TUS)
    if length is not None:
        h["Upload-Length"] = str(length)
    if meta is not None:
        h["Upload-Metadata"] = meta
    h.update(headers or {})
    return requests.post(base_url + "/files/", headers=h, **kwargs)


def create_url(base_url: str, length: Optional[int] = None, meta: Optional[str] = None,
               headers: Optional[dict] = None) -> str:
    response = create(base_url, length, meta, headers)
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def patch(url: str, offset: int, data, headers: Optional[dict] = None) -> requests.Response:
    h = {**TUS, **OCTET, "Upload-Offset": str(offset)}
    h.update(headers or {})
    return requests.patch(url, data=data, headers=h)


def head(url: str) -> requests.Response:
    return requests.head(url, headers=TUS)


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def stored_objects(store: MinioStore, upload_id_: str) -> dict[str, int]:
    """Object name (relative to the upload's bucket or prefix) -> size, once this process's
    background deletes are done (`storage/chores.py`: a request's garbage goes after it)."""
    chores.drain()
    bucket, prefix = store._location(upload_id_)
    if not store.client.bucket_exists(bucket):
        return {}
    return {o.object_name[len(prefix):]: o.size
            for o in store.client.list_objects(bucket, prefix=prefix, recursive=True)}


def chunk_objects(store: MinioStore, upload_id_: str) -> dict[str, int]:
    return {k: v for k, v in stored_objects(store, upload_id_).items() if not k.startswith(".tus/")}


def data_objects(store: MinioStore, upload_id_: str) -> dict[str, int]:
    """The objects that hold file bytes: chunks, and pieces of a chunk not yet full."""
    return {k: v for k, v in stored_objects(store, upload_id_).items()
            if not k.startswith(".tus/") or k.startswith(".tus/pieces/")}


def read_object(store: MinioStore, upload_id_: str, name: str) -> bytes:
    bucket, prefix = store._location(upload_id_)
    response = store.client.get_object(bucket, prefix + name)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def leftovers(store: MinioStore, upload_id_: str) -> dict[str, int]:
    """What a terminated upload left behind: nothing but, in the prefix layout, its tombstone
    (a generation marked terminated, which keeps a stalled writer from reviving it)."""
    return {name: size for name, size in stored_objects(store, upload_id_).items()
            if not (name.startswith(".tus/info/")
                    and json.loads(read_object(store, upload_id_, name)).get("terminated"))}


def stored_file(store: MinioStore, upload_id_: str) -> bytes:
    """The bytes the upload's newest state says are stored, read straight from MinIO: the
    chunk objects below the offset in part order, then the pieces of the chunk not yet full."""
    info = store.get(upload_id_)
    total = chunk_count(info.length, info.chunk_size) if info.length is not None else None
    whole = total if info.completed else info.offset // info.chunk_size
    data = b"".join(read_object(store, upload_id_, chunk_key(info.filename, x, total))
                    for x in range(1, (whole or 0) + 1))
    return data + b"".join(read_object(store, upload_id_, piece[2]) for piece in info.pieces)


class ThreadedServer:
    """A WSGI app served by Werkzeug in a daemon thread on a free loopback port."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
