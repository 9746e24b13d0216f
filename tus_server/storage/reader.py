"""A finished upload's bytes, chunk by chunk: each chunk checked against the integrity value
written in the same PUT as its bytes, before any of it is sent: the CRC32C that MinIO verified
on arrival (`x-amz-checksum-crc32c`), or for chunks written by earlier versions the SHA-256 in
`x-amz-meta-sha256`.

A chunk read whole is checked against its digest; a chunk read in part (the edges of a Range)
is checked for size only. A chunk the state lists a stand-in for (parts.py) is read from it.
A final (concatenated) upload yields its partials' bytes in order.
The reader keeps `READ_AHEAD` chunk reads in flight while the current one is being sent. A
chunk read that fails is tried again before the download is cut (`_read_chunk`).

Copies: each piece (`PIECE`, 1 MiB) comes off MinIO's socket straight into a fresh `bytes`
(the one copy out of the kernel), its CRC32C is added while it is still in the CPU's cache,
and the verified chunk is yielded as those pieces: never joined. (WSGI servers take `bytes`
only, so reading into a reused buffer would cost a copy into a new `bytes` per piece.)
"""
from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional

import crc32c
import urllib3
from minio.error import MinioException, S3Error

from .heap import give_back_freed_memory
from .layout import chunk_count, chunk_key
from .objects import CHECKSUM_MODE, CRC32C_HEADER, SHA256_META, Objects, crc32c_b64_of
from .store import StorageUnavailable, StoredDataCorrupt, UploadInfo, UploadNotFound

log = logging.getLogger("tus_server.store")

# Chunks a download reads ahead of the one being sent.
READ_AHEAD = 2
# Tries at one chunk read before the download is cut, the pause before the second (doubling:
# 0.2 + 0.4 + 0.8 + 1.6 s in all), and the size of the pieces read.
READ_ATTEMPTS = 5
RETRY_PAUSE = 0.2
PIECE = 1024 * 1024
# A download that read at least this much gives the freed heap back when it is the last one
# running (`heap.py`); smaller ones leave it (a trim per small file would cost more).
GIVE_BACK_AFTER = 8 * 1024 * 1024


class ChunkReader:
    def __init__(self, objects: Objects, read_info: Callable[[str], UploadInfo]):
        self.objects = objects
        self.read_info = read_info
        self._running = 0  # chunk streams open in this process
        self._running_guard = threading.Lock()

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
        with self._running_guard:
            self._running += 1
        try:
            for step in plan:
                pending.append(pool.submit(self._read_chunk, info, *step))
                if len(pending) > READ_AHEAD:
                    yield from _drain(pending.popleft().result())
            while pending:
                yield from _drain(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            with self._running_guard:
                self._running -= 1
                last = self._running == 0
            if last and end - start >= GIVE_BACK_AFTER:
                give_back_freed_memory()

    def _read_chunk(self, info: UploadInfo, index: int, lo: int,
                    hi: int) -> collections.deque:
        """Bytes [lo, hi) of chunk `index` (0-based) as pieces, verified when the whole chunk
        is read.

        A read that fails (NoSuchKey, 5xx, a reset, fewer bytes than announced) is tried
        again on a fresh connection, from the byte where it stopped, up to `READ_ATTEMPTS`
        times: a node that just rejoined may miss objects written while it was down.
        """
        bucket, prefix = self.objects.location(info.id)
        total = chunk_count(info.length or 0, info.chunk_size)
        chunk_len = min(info.chunk_size, (info.length or 0) - index * info.chunk_size)
        key = prefix + chunk_key(info.filename, index + 1, total)
        stand_in = next((s[2] for s in info.stand_ins if s[0] == index * info.chunk_size), None)
        got = _Received(whole=lo == 0 and hi == chunk_len)
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_PAUSE * 2 ** (attempt - 1))
            try:
                self._fetch(bucket, prefix + stand_in if stand_in else key, lo, hi, got)
                break
            except _ReadFailed as exc:
                failure = exc
                if stand_in and exc.missing and self._settled(info, stand_in):
                    stand_in = None  # the chunk's own name holds the same bytes now
                    got.reset()
                log.debug("chunk read failed (attempt %d) upload_id=%s chunk=%d at byte %d: %s",
                          attempt + 1, info.id, index + 1, lo + got.size, exc)
        else:
            # Said once, by the download that is cut (or answered 503).
            raise StorageUnavailable(f"chunk {index + 1} of upload {info.id} unreadable after "
                                     f"{READ_ATTEMPTS} attempts: {failure}")
        problem = got.problem(hi - lo)
        if problem is None:
            return got.pieces
        log.error("corrupt chunk upload_id=%s chunk=%d: %s", info.id, index + 1, problem)
        raise StoredDataCorrupt(info.id, index + 1, problem)

    def _settled(self, info: UploadInfo, stand_in: str) -> bool:
        """Has the stand-in been copied to its chunk's name (stand_ins.py)? Only the newest
        state says so: a node that just rejoined may miss the piece for a moment, and the
        chunk's name may hold other bytes until the state stops listing the stand-in."""
        try:
            return all(s[2] != stand_in for s in self.read_info(info.id).stand_ins)
        except (StorageUnavailable, UploadNotFound):  # unreadable now: the stand-in again
            return False

    def _fetch(self, bucket: str, key: str, lo: int, hi: int, got: "_Received") -> None:
        """Read what is still missing of [lo, hi) into `got`; _ReadFailed on any fault."""
        client = self.objects.client
        start = lo + got.size
        response = None
        try:
            if got.whole and got.size == 0:
                response = client.get_object(bucket, key, request_headers=CHECKSUM_MODE)
            else:
                response = client.get_object(bucket, key, offset=start, length=hi - start)
            etag = response.headers.get("ETag")
            if got.etag is not None and etag != got.etag:  # replaced meanwhile: start over
                got.reset()
                raise _ReadFailed("the chunk changed between two attempts")
            if got.size == 0:
                got.expect(etag, response.headers.get(CRC32C_HEADER),
                           response.headers.get(SHA256_META))
            announced = int(response.headers.get("Content-Length", -1))
            received = 0
            for piece in response.stream(PIECE):
                got.add(piece)
                received += len(piece)
            if announced >= 0 and received < announced:
                raise _ReadFailed(f"{received} of {announced} bytes")
        except S3Error as exc:
            raise _ReadFailed(f"MinIO answered {exc.code}", missing=exc.code == "NoSuchKey") \
                from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            raise _ReadFailed(type(exc).__name__) from None
        finally:
            if response is not None:
                response.close()  # never back to the pool half read: the next try reconnects
                response.release_conn()


def _drain(pieces: collections.deque) -> Iterator[bytes]:
    """A verified chunk's pieces, each let go of once it is sent."""
    while pieces:
        yield pieces.popleft()


class _Received:
    """What the attempts at one chunk read have brought so far, and its digest so far: the
    CRC32C (or, for chunks of earlier versions, the SHA-256) is extended piece by piece as the
    bytes arrive, across attempts, so a whole chunk is never read a second time to check it."""

    def __init__(self, whole: bool):
        self.whole = whole
        self.reset()

    def reset(self) -> None:
        self.pieces: collections.deque = collections.deque()
        self.size = 0
        self.etag = self.crc = self.sha = None
        self._crc = 0
        self._sha = None

    def expect(self, etag: Optional[str], crc: Optional[str], sha: Optional[str]) -> None:
        """The integrity values of the first response (the ones the chunk is checked against)."""
        self.etag, self.crc, self.sha = etag, crc, sha
        if self.whole and crc is None and sha is not None:  # written before S3 checksums
            self._sha = hashlib.sha256()

    def add(self, piece: bytes) -> None:
        # At most PIECE bytes: hashed in place, a short hold of the event loop under gevent.
        if self.whole and self.crc is not None:
            self._crc = crc32c.crc32c(piece, self._crc)
        elif self._sha is not None:
            self._sha.update(piece)
        self.pieces.append(piece)
        self.size += len(piece)

    def problem(self, expected_size: int) -> Optional[str]:
        """None when the bytes are the chunk as stored; else what is wrong with them."""
        if self.size != expected_size:
            return "size differs from what was stored"
        if not self.whole:
            return None
        if self.crc is not None:
            if self.crc == crc32c_b64_of(self._crc):
                return None
            return "CRC32C differs from the one MinIO recorded"
        if self._sha is not None:
            if self.sha == self._sha.hexdigest():
                return None
            return "SHA-256 differs from the recorded one"
        return "carries no integrity value"


class _ReadFailed(Exception):
    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing  # MinIO said NoSuchKey
