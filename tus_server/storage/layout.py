"""Where one upload's objects live and what they are called.

    bucket layout (default)            prefix layout (TUS_LAYOUT=prefix)
    bucket  tus-<hex>/                 bucket  $TUS_BUCKET/
      .tus/info.json                     tus-<hex>/.tus/info.json
      .tus/lock/<generation>...          tus-<hex>/.tus/lock/<generation>...
      <filename>.part1of<Y>              tus-<hex>/<filename>.part1of<Y>
      ...                                ...
      <filename>.part<Y>of<Y>            tus-<hex>/<filename>.part<Y>of<Y>
                                       .tus-index/<inverted created time>-<id>  (listing order)

Chunk X (1-based) holds bytes [(X-1)*C, X*C) of the file, C being the chunk size fixed at
creation; Y = ceil(length / C). While the length is deferred, chunks are named
`<filename>.part<X>of_` and are renamed by server-side copy once the length is declared.
"""
from __future__ import annotations

import math
from typing import Optional

from ..config import Settings
from .store import UploadInfo, UploadNotFound, is_upload_id

INFO_NAME = ".tus/info.json"
LOCK_PREFIX = ".tus/lock/"  # write-once generations, storage/lease.py
INDEX_PREFIX = ".tus-index/"


def chunk_key(filename: str, index: int, total: Optional[int]) -> str:
    """Object name of chunk `index` (1-based) of `total` (None while the length is deferred)."""
    return f"{filename}.part{index}of{'_' if total is None else total}"


def chunk_count(length: int, chunk_size: int) -> int:
    return math.ceil(length / chunk_size) if length else 0


def index_marker(info: UploadInfo) -> str:
    """Prefix layout: an empty object per upload whose names list newest first."""
    return f"{INDEX_PREFIX}{(10**13 - int(info.created * 1000)):013d}-{info.id}"


def location(settings: Settings, upload_id: str) -> tuple[str, str]:
    """(bucket, key prefix) holding one upload's objects; a malformed id is a 404 at once."""
    if not is_upload_id(upload_id):
        raise UploadNotFound(upload_id)
    if settings.layout == "prefix":
        return settings.bucket, upload_id + "/"
    return upload_id, ""
