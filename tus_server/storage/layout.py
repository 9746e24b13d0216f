"""Where one upload's objects live and what they are called.

    bucket layout (default)            prefix layout (TUS_LAYOUT=prefix)
    bucket  tus-<hex>/                 bucket  $TUS_BUCKET/
      .tus/info/<inverted gen>           tus-<hex>/.tus/info/<inverted gen>
      .tus/pieces/<start>-<token>-<n>    tus-<hex>/.tus/pieces/<start>-<token>-<n>
      .tus/lock/<inverted gen>           tus-<hex>/.tus/lock/<inverted gen>
      <filename>.part1of<Y>              tus-<hex>/<filename>.part1of<Y>
      ...                                ...
      <filename>.part<Y>of<Y>            tus-<hex>/<filename>.part<Y>of<Y>
                                       .tus-index/<inverted created time>-<id>  (listing order)

`.tus/info/<N>` are the write-once generations of the upload's state (newest first in a
listing, see generations.py); `.tus/info.json` is the single state object of earlier versions,
still read as generation 0. `.tus/pieces/` hold the bytes of the chunk that is not full yet.

Chunk X (1-based) holds bytes [(X-1)*C, X*C) of the file, C being the chunk size fixed at
creation; Y = ceil(length / C). While the length is deferred, chunks are named
`<filename>.part<X>of_`; once the length is declared, those below the offset are copied to
`of<Y>` (new keys) and the chunk holding the offset is made from its pieces.
"""
from __future__ import annotations

import math
from typing import Optional

from ..config import Settings
from .store import UploadInfo, UploadNotFound, is_upload_id

INFO_NAME = ".tus/info.json"  # the legacy state object (generation 0)
GENERATION_PREFIX = ".tus/info/"
PIECE_PREFIX = ".tus/pieces/"
LOCK_PREFIX = ".tus/lock/"  # write-once generations, storage/lease.py
INDEX_PREFIX = ".tus-index/"
# Generation numbers are stored inverted, so that the newest sorts first in a listing.
GENERATION_LIMIT = 10**12 - 1


def generation_key(generation: int) -> str:
    return f"{GENERATION_PREFIX}{GENERATION_LIMIT - generation:012d}"


def generation_number(key: str) -> Optional[int]:
    """The generation a key of `GENERATION_PREFIX` names (None for a foreign name)."""
    tail = key.rsplit("/", 1)[-1]
    return GENERATION_LIMIT - int(tail) if len(tail) == 12 and tail.isdigit() else None


def piece_key(start: int, token: str, serial: int) -> str:
    """A piece of file bytes from `start`: unique per writer token, never overwritten."""
    return f"{PIECE_PREFIX}{start:015d}-{token}-{serial}"


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
