"""A finished upload's bytes, chunk by chunk: each chunk checked against the integrity value
written in the same PUT as its bytes, before any of it is sent: the CRC32C that MinIO verified
on arrival (`x-amz-checksum-crc32c`), or for chunks written by earlier versions the SHA-256 in
`x-amz-meta-sha256`.

A chunk read whole is checked against its digest; a chunk read in part (the edges of a Range)
is checked for size only. A final (concatenated) upload yields its partials' bytes in order.
The reader keeps `READ_AHEAD` chunk reads in flight while the current one is being sent.
"""
from __future__ import annotations

import collections
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from ..cooperative import offload
from .layout import chunk_count, chunk_key
from .objects import CRC32C_HEADER, SHA256_META, Objects, crc32c_b64, storage_errors
from .store import StoredDataCorrupt, UploadInfo

log = logging.getLogger("tus_server.store")

CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}  # ask MinIO for the stored CRC32C
# Chunks a download reads ahead of the one being sent.
READ_AHEAD = 2


class ChunkReader:
    def __init__(self, objects: Objects, read_info: Callable[[str], UploadInfo]):
        self.objects = objects
        self.read_info = read_info

    def open(self, info: UploadInfo, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) of a finished upload."""
        if info.concat == "final":
            return self._open_final(info, start, end)
        return self._open_chunks(info, start, end)

    def _open_final(self, info: UploadInfo, start: int, end: int) -> Iterator[bytes]:
        position = 0
        for partial_id in info.partials:
            partial = self.read_info(partial_id)
            size = partial.length or 0
            lo, hi = max(start, position), min(end, position + size)
            if lo < hi:
                yield from self._open_chunks(partial, lo - position, hi - position)
            position += size

    def _open_chunks(self, info: UploadInfo, start: int, end: int) -> Iterator[bytes]:
        if start >= end:
            return
        size = info.chunk_size
        plan = []
        for index in range(start // size, (end - 1) // size + 1):
            chunk_start = index * size
            lo = max(start, chunk_start) - chunk_start
            hi = min(end, chunk_start + size, info.length) - chunk_start
            plan.append((index, lo, hi))
        pool = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="tus-prefetch")
        pending: collections.deque = collections.deque()
        try:
            for step in plan:
                pending.append(pool.submit(self._read_chunk, info, *step))
                if len(pending) > READ_AHEAD:
                    yield pending.popleft().result()  # bytes, as WSGI servers require
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _read_chunk(self, info: UploadInfo, index: int, lo: int, hi: int) -> bytes:
        """Bytes [lo, hi) of chunk `index` (0-based), verified when the whole chunk is read."""
        bucket, prefix = self.objects.location(info.id)
        total = chunk_count(info.length or 0, info.chunk_size)
        chunk_len = min(info.chunk_size, (info.length or 0) - index * info.chunk_size)
        key = prefix + chunk_key(info.filename, index + 1, total)
        whole = lo == 0 and hi == chunk_len
        client = self.objects.client
        with storage_errors(info.id):
            if whole:
                response = client.get_object(bucket, key, request_headers=CHECKSUM_MODE)
            else:
                response = client.get_object(bucket, key, offset=lo, length=hi - lo)
            try:
                data = response.read()
                crc = response.headers.get(CRC32C_HEADER)
                sha = response.headers.get(SHA256_META)
            finally:
                response.close()
                response.release_conn()
        if len(data) != hi - lo:
            problem = "size differs from what was stored"
        elif not whole:
            return data
        elif crc is not None:
            if crc == crc32c_b64(data):
                return data
            problem = "CRC32C differs from the one MinIO recorded"
        elif sha is not None:  # written before the move to S3 checksums
            if sha == offload(lambda: hashlib.sha256(data).hexdigest()):  # a whole chunk
                return data
            problem = "SHA-256 differs from the recorded one"
        else:
            problem = "carries no integrity value"
        log.error("corrupt chunk upload_id=%s chunk=%d: %s", info.id, index + 1, problem)
        raise StoredDataCorrupt(info.id, index + 1, problem)
