"""MinioStore: the `Store` on MinIO.

Layout of one upload (id `tus-<32 hex>`):

    bucket layout (default)            prefix layout (TUS_LAYOUT=prefix)
    bucket  tus-<hex>/                 bucket  $TUS_BUCKET/
      .tus/info.json                     tus-<hex>/.tus/info.json
      .tus/lock                          tus-<hex>/.tus/lock
      <filename>.part1of<Y>              tus-<hex>/<filename>.part1of<Y>
      ...                                ...
      <filename>.part<Y>of<Y>            tus-<hex>/<filename>.part<Y>of<Y>
                                       .tus-index/<inverted created time>-<id>  (listing order)

* `.tus/info.json` is the upload's `UploadInfo` as JSON. Its `offset` is the truth: a chunk
  object is put first and the info second, so a crash in between only leaves bytes past the
  offset, which are ignored and overwritten when the upload resumes.
* Chunk X (1-based) holds bytes [(X-1)*C, X*C) of the file, C being the chunk size fixed at
  creation; Y = ceil(length / C). While the length is deferred, chunks are named
  `<filename>.part<X>of_` and are renamed by server-side copy once the length is declared.
* Each chunk object carries the SHA-256 of its bytes as `x-amz-meta-sha256`, set in the same
  PUT, so a reader can check what it gets back.
* A PATCH whose offset falls inside chunk k reads back the stored head of chunk k, appends body
  bytes until the chunk is full, puts it, advances the offset, and repeats. The body is
  received into one of two reusable chunk buffers while the other is being put to MinIO.
* `.tus/lock` is a lease (holder, expiry) created with `If-None-Match: *` and taken over from a
  dead holder with `If-Match: <etag>`, so two processes never write one upload at once.
* Termination removes every object of the upload and, in the bucket layout, the bucket.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import io
import json
import logging
import math
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import BinaryIO, Iterator, Optional

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.commonconfig import CopySource

from .config import Settings
from .store import (
    BodyVerifier,
    ChecksumMismatch,
    LengthExceeded,
    OffsetMismatch,
    StorageUnavailable,
    StoredDataCorrupt,
    UploadInfo,
    UploadLocked,
    UploadNotFound,
    WriteResult,
    is_upload_id,
)

log = logging.getLogger("tus_server.store")

INFO_NAME = ".tus/info.json"
LOCK_NAME = ".tus/lock"
INDEX_PREFIX = ".tus-index/"
SHA256_META = "x-amz-meta-sha256"
NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "NoSuchUpload", "ResourceNotFound"}
# Chunks a download reads ahead of the one being sent.
READ_AHEAD = 2
# Seconds of lease left under which a release first checks that the lock is still ours
# (hosts sharing a MinIO need clocks in sync to well within this).
RELEASE_MARGIN = 2.0


def chunk_key(filename: str, index: int, total: Optional[int]) -> str:
    """Object name of chunk `index` (1-based) of `total` (None while the length is deferred)."""
    return f"{filename}.part{index}of{'_' if total is None else total}"


def index_marker(info: UploadInfo) -> str:
    """Prefix layout: an empty object per upload whose names list newest first."""
    return f"{INDEX_PREFIX}{(10**13 - int(info.created * 1000)):013d}-{info.id}"


def chunk_count(length: int, chunk_size: int) -> int:
    return math.ceil(length / chunk_size) if length else 0


class _RunningHashes:
    """Whole-file SHA-256 state for uploads whose bytes this process received in order.

    A cache, not state: when an entry is missing (restart, another process wrote the previous
    PATCH) the digest is computed later from the stored chunks instead.
    """

    def __init__(self, max_entries: int = 1024):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, "hashlib._Hash"]] = {}
        self._max = max_entries

    def take(self, upload_id: str, offset: int):
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if offset == 0:
            return hashlib.sha256()
        if entry and entry[0] == offset:
            return entry[1]
        return None

    def put(self, upload_id: str, offset: int, hasher) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[upload_id] = (offset, hasher)

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)


class MinioStore:
    """Uploads kept chunk by chunk in MinIO; see the module docstring for the layout."""

    def __init__(self, settings: Settings, client: Optional[Minio] = None):
        self.settings = settings
        self.http = urllib3.PoolManager(
            maxsize=64,
            timeout=urllib3.Timeout(connect=3.0, read=120.0),
            retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
        )
        self.client = client or Minio(
            settings.minio_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            secure=settings.minio_secure,
            region=settings.minio_region,
            http_client=self.http,
        )
        self._hashes = _RunningHashes()
        self._local_locks: dict[str, list] = {}  # upload id -> [Lock, users]
        self._local_locks_guard = threading.Lock()
        self._digesting: set[str] = set()
        # Lock holders of this process whose release failed (MinIO was down): their lock
        # objects may be taken over at once by this process, which holds the local lock.
        self._orphaned_holders: set[str] = set()
        self._digesting_guard = threading.Lock()
        self._shared_bucket_ready = False

    # ----------------------------------------------------------------- locations
    def _location(self, upload_id: str) -> tuple[str, str]:
        """(bucket, key prefix) holding one upload's objects."""
        if not is_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        if self.settings.layout == "prefix":
            return self.settings.bucket, upload_id + "/"
        return upload_id, ""

    @contextmanager
    def _storage_errors(self, upload_id: str = ""):
        """Translate MinIO and network failures into store errors."""
        try:
            yield
        except S3Error as exc:
            if exc.code in NOT_FOUND_CODES:
                raise UploadNotFound(upload_id) from exc
            raise StorageUnavailable(f"MinIO answered {exc.code}") from exc
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            raise StorageUnavailable(f"MinIO unreachable: {type(exc).__name__}") from exc

    def _ensure_shared_bucket(self) -> None:
        if self._shared_bucket_ready:
            return
        bucket = self.settings.bucket
        try:
            self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._shared_bucket_ready = True

    # ----------------------------------------------------------------- info
    def _read_info(self, upload_id: str) -> UploadInfo:
        bucket, prefix = self._location(upload_id)
        with self._storage_errors(upload_id):
            response = self.client.get_object(bucket, prefix + INFO_NAME)
            try:
                data = response.read()
            finally:
                response.close()
                response.release_conn()
        return UploadInfo.from_dict(json.loads(data))

    def _write_info(self, info: UploadInfo) -> None:
        bucket, prefix = self._location(info.id)
        data = json.dumps(info.to_dict(), separators=(",", ":")).encode()
        with self._storage_errors(info.id):
            self.client.put_object(bucket, prefix + INFO_NAME, io.BytesIO(data), len(data),
                                   content_type="application/json")

    # ----------------------------------------------------------------- Store verbs
    def create(self, info: UploadInfo) -> UploadInfo:
        bucket, prefix = self._location(info.id)
        with self._storage_errors(info.id):
            if self.settings.layout == "prefix":
                self._ensure_shared_bucket()
                marker = index_marker(info)
                self.client.put_object(bucket, marker, io.BytesIO(b""), 0)
            else:
                self.client.make_bucket(bucket)
        if info.length == 0:
            info.completed = True
            info.sha256 = hashlib.sha256().hexdigest()
        self._write_info(info)
        return info

    def get(self, upload_id: str) -> UploadInfo:
        return self._read_info(upload_id)

    def write(self, upload_id: str, offset: int, stream: BinaryIO, length_hint: Optional[int],
              verifier: Optional[BodyVerifier] = None,
              limit: Optional[int] = None) -> WriteResult:
        """Append the body in `stream` at `offset`; see the module docstring for the steps.

        `limit` caps the total size of an upload whose length is deferred (Tus-Max-Size).
        With a `verifier`, nothing is counted unless the whole body verifies.
        """
        with self.locked(upload_id) as lease:
            info = self._read_info(upload_id)
            if info.offset != offset:
                raise OffsetMismatch(info.offset, offset)
            if info.length is not None:
                room = info.length - offset
            elif limit:
                room = limit - offset
            else:
                room = None
            if length_hint is not None and room is not None and length_hint > room:
                raise LengthExceeded(
                    f"{length_hint} bytes at offset {offset} would pass the "
                    f"{'upload length' if info.length is not None else 'maximum size'} "
                    f"{offset + room}")
            writer = _ChunkWriter(self, info, verifier, lease)
            return writer.run(stream, room)

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        """Fix the length of a deferred upload and rename its `of_` chunks to `of<Y>`."""
        with self.locked(upload_id):
            info = self._read_info(upload_id)
            if info.length is not None:
                return info
            if length < info.offset:
                raise LengthExceeded(
                    f"Upload-Length {length} is below the {info.offset} bytes already stored")
            bucket, prefix = self._location(upload_id)
            total = chunk_count(length, info.chunk_size)
            stored = chunk_count(info.offset, info.chunk_size)
            with self._storage_errors(upload_id):
                for index in range(1, stored + 1):
                    self.client.copy_object(
                        bucket, prefix + chunk_key(info.filename, index, total),
                        CopySource(bucket, prefix + chunk_key(info.filename, index, None)))
            info.length = length
            if info.offset == length:
                self._complete(info, self._hashes.take(upload_id, info.offset))
            self._write_info(info)
            with self._storage_errors(upload_id):
                for index in range(1, stored + 1):
                    self.client.remove_object(bucket, prefix + chunk_key(info.filename, index, None))
            if info.completed and info.sha256 is None:
                self.schedule_digest(upload_id)
            return info

    def terminate(self, upload_id: str) -> None:
        bucket, prefix = self._location(upload_id)
        # Wait a little: a background digest pass holds the lock only briefly.
        wait = max(self.settings.lock_wait, 2.0)
        with self.locked(upload_id, wait=wait, keep_lock_object=True):
            info = self._read_info(upload_id)
            with self._storage_errors(upload_id):
                names = [obj.object_name for obj in
                         self.client.list_objects(bucket, prefix=prefix, recursive=True)]
                # The info goes last: until it is gone, the upload still answers HEAD.
                names.sort(key=lambda name: name.endswith(INFO_NAME))
                self._remove_objects(bucket, names)
                if self.settings.layout == "prefix":
                    self.client.remove_object(bucket, index_marker(info))
                else:
                    self.client.remove_bucket(bucket)
        self._hashes.drop(upload_id)

    def _remove_objects(self, bucket: str, names: list[str]) -> None:
        errors = list(self.client.remove_objects(bucket, [DeleteObject(n) for n in names]))
        if errors:
            raise StorageUnavailable(f"could not remove {len(errors)} objects: {errors[0]}")

    def open(self, upload_id: str, start: int, end: int,
             info: Optional[UploadInfo] = None) -> Iterator[bytes]:
        """Bytes [start, end) of a finished upload, read chunk by chunk.

        A chunk read whole is checked against its recorded SHA-256 before any of it is
        yielded; a chunk read in part (the edges of a Range) is checked for size only.
        A final (concatenated) upload yields its partial uploads' bytes in order.
        """
        info = info or self._read_info(upload_id)
        if info.concat == "final":
            return self._open_final(info, start, end)
        return self._open_chunks(info, start, end)

    def _open_final(self, info: UploadInfo, start: int, end: int) -> Iterator[bytes]:
        position = 0
        for partial_id in info.partials:
            partial = self._read_info(partial_id)
            size = partial.length or 0
            lo, hi = max(start, position), min(end, position + size)
            if lo < hi:
                yield from self._open_chunks(partial, lo - position, hi - position)
            position += size

    def _open_chunks(self, info: UploadInfo, start: int, end: int) -> Iterator[bytes]:
        size = info.chunk_size
        first, last = start // size, (end - 1) // size
        plan = []
        for index in range(first, last + 1):
            chunk_start = index * size
            lo = max(start, chunk_start) - chunk_start
            hi = min(end, chunk_start + size, info.length) - chunk_start
            plan.append((index, lo, hi))
        if start >= end:
            return
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
        bucket, prefix = self._location(info.id)
        total = chunk_count(info.length or 0, info.chunk_size)
        chunk_len = min(info.chunk_size, (info.length or 0) - index * info.chunk_size)
        key = prefix + chunk_key(info.filename, index + 1, total)
        whole = lo == 0 and hi == chunk_len
        with self._storage_errors(info.id):
            if whole:
                response = self.client.get_object(bucket, key)
            else:
                response = self.client.get_object(bucket, key, offset=lo, length=hi - lo)
            try:
                data = response.read()
                recorded = response.headers.get(SHA256_META)
            finally:
                response.close()
                response.release_conn()
        if len(data) != hi - lo:
            log.error("corrupt chunk upload_id=%s chunk=%d: size differs from the recorded size",
                      info.id, index + 1)
            raise StoredDataCorrupt(info.id, index + 1, "size differs from what was stored")
        if whole and recorded != hashlib.sha256(data).hexdigest():
            log.error("corrupt chunk upload_id=%s chunk=%d: SHA-256 differs from the recorded one",
                      info.id, index + 1)
            raise StoredDataCorrupt(info.id, index + 1, "SHA-256 differs from the recorded one")
        return data

    def list_ids(self) -> list[str]:
        """Upload ids, newest first, without reading any upload's objects."""
        with self._storage_errors():
            if self.settings.layout == "prefix":
                self._ensure_shared_bucket()
                # Marker names sort newest first: `<inverted created ms>-<upload id>`.
                return [obj.object_name[len(INDEX_PREFIX):].split("-", 1)[1]
                        for obj in self.client.list_objects(self.settings.bucket, prefix=INDEX_PREFIX)]
            buckets = [b for b in self.client.list_buckets() if is_upload_id(b.name)]
        buckets.sort(key=lambda b: b.creation_date, reverse=True)
        return [b.name for b in buckets]

    def list(self) -> list[UploadInfo]:
        infos = []
        for upload_id in self.list_ids():
            try:
                infos.append(self._read_info(upload_id))
            except UploadNotFound:
                continue  # terminated while we listed
        return infos

    def expire(self, now: float) -> list[str]:
        """Remove unfinished uploads past their expiry and finished ones past retention."""
        removed = []
        for info in self.list():
            stale = (not info.completed and info.expires is not None and info.expires < now)
            retired = (info.completed and self.settings.retention
                       and info.updated + self.settings.retention < now)
            if stale or retired:
                try:
                    self.terminate(info.id)
                except (UploadLocked, UploadNotFound):
                    continue
                removed.append(info.id)
                log.info("swept upload_id=%s (%s)", info.id, "expired" if stale else "retention")
        return removed

    def healthy(self) -> bool:
        try:
            with self._storage_errors():
                self.client.bucket_exists(self.settings.bucket)
            return True
        except StorageUnavailable:
            return False

    # ----------------------------------------------------------------- completion & digests
    def _complete(self, info: UploadInfo, hasher) -> None:
        info.completed = True
        info.expires = None
        if hasher is not None:
            info.sha256 = hasher.hexdigest()
        self._hashes.drop(info.id)

    def schedule_digest(self, upload_id: str) -> None:
        """Compute a finished upload's SHA-256 from its chunks in a background thread."""
        with self._digesting_guard:
            if upload_id in self._digesting:
                return
            self._digesting.add(upload_id)
        threading.Thread(target=self._digest_pass, args=(upload_id,), daemon=True,
                         name=f"digest-{upload_id}").start()

    def _digest_pass(self, upload_id: str) -> None:
        try:
            info = self._read_info(upload_id)
            if info.sha256 or not info.completed:
                return
            hasher = hashlib.sha256()
            for piece in self.open(upload_id, 0, info.length or 0, info):
                hasher.update(piece)
            with self.locked(upload_id, wait=30.0):
                info = self._read_info(upload_id)
                info.sha256 = hasher.hexdigest()
                self._write_info(info)
            log.info("digest computed upload_id=%s", upload_id)
        except UploadNotFound:
            log.info("digest pass stopped: upload_id=%s was terminated", upload_id)
        except Exception:  # logged; the next GET schedules it again
            log.exception("digest pass failed upload_id=%s", upload_id)
        finally:
            with self._digesting_guard:
                self._digesting.discard(upload_id)

    # ----------------------------------------------------------------- locking
    @contextmanager
    def locked(self, upload_id: str, wait: Optional[float] = None, keep_lock_object: bool = False):
        """Hold the upload against other requests in this process and in other processes."""
        wait = self.settings.lock_wait if wait is None else wait
        with self._local_locks_guard:
            entry = self._local_locks.setdefault(upload_id, [threading.Lock(), 0])
            entry[1] += 1  # requests holding or waiting; the entry goes when none are left
        local = entry[0]
        try:
            got_local = local.acquire(timeout=wait) if wait > 0 else local.acquire(blocking=False)
            if not got_local:
                raise UploadLocked(f"upload {upload_id} is busy with another request")
            try:
                lease = _Lease(self, upload_id)
                lease.acquire(wait)
                try:
                    yield lease
                finally:
                    lease.release(keep_object=keep_lock_object)
            finally:
                local.release()
        finally:
            with self._local_locks_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._local_locks[upload_id]

    def _presigned_put(self, upload_id: str, key: str, body, headers: dict,
                       query: Optional[dict] = None, retries=None):
        """PUT `body` to `key` through a presigned URL and our own urllib3 pool.

        minio-py 7.2's `put_object` can neither send S3 preconditions nor take a buffer without
        copying and hashing it again (it signs bodies over plain HTTP). A presigned URL signs
        only the request line (and `query`, e.g. `x-amz-meta-*` values), so headers such as
        `If-None-Match` may be added and the bytes go out as they are.
        """
        bucket = self._location(upload_id)[0]
        url = self.client.get_presigned_url("PUT", bucket, key, expires=timedelta(minutes=15),
                                            extra_query_params=query)
        with self._storage_errors(upload_id):
            response = self.http.request("PUT", url, body=body, headers=headers, retries=retries)
        if response.status == 404:
            raise UploadNotFound(upload_id)
        return response

    def conditional_put(self, upload_id: str, name: str, data: bytes,
                        if_match: Optional[str] = None, if_none_match: bool = False):
        """PUT with an S3 precondition; returns the new ETag, or None if it failed (412)."""
        headers = {"Content-Type": "application/json"}
        if if_none_match:
            headers["If-None-Match"] = "*"
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        # No retries: a retried create could find its own first attempt and call it taken.
        response = self._presigned_put(upload_id, self._location(upload_id)[1] + name, data,
                                       headers, retries=False)
        if response.status in (200, 201):
            return response.headers.get("ETag", "").strip('"')
        if response.status in (409, 412):
            return None
        raise StorageUnavailable(f"lock PUT answered {response.status}")

    def put_chunk_object(self, upload_id: str, key: str, view: memoryview, digest: str) -> None:
        """PUT one chunk straight from the receive buffer, its SHA-256 in the same request.

        The digest travels as a signed `x-amz-meta-sha256` query parameter, which S3 and MinIO
        accept for presigned PUTs (an unsigned `x-amz-meta-*` header would be refused); the
        hash computed for it is the only pass over the bytes.
        """
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(view))}
        response = self._presigned_put(upload_id, key, view, headers, query={SHA256_META: digest})
        if response.status != 200:
            raise StorageUnavailable(f"chunk PUT answered {response.status}")

    def read_object(self, upload_id: str, name: str) -> tuple[Optional[bytes], Optional[str]]:
        bucket, prefix = self._location(upload_id)
        try:
            with self._storage_errors(upload_id):
                response = self.client.get_object(bucket, prefix + name)
                try:
                    return response.read(), response.headers.get("ETag", "").strip('"')
                finally:
                    response.close()
                    response.release_conn()
        except UploadNotFound:
            return None, None

    def remove_object(self, upload_id: str, name: str) -> None:
        bucket, prefix = self._location(upload_id)
        try:
            with self._storage_errors(upload_id):
                self.client.remove_object(bucket, prefix + name)
        except UploadNotFound:
            pass


class _Lease:
    """A lock object in MinIO with an expiry, so a holder that died blocks only for the lease."""

    def __init__(self, store: MinioStore, upload_id: str):
        self.store = store
        self.upload_id = upload_id
        self.holder = uuid.uuid4().hex
        self.etag: Optional[str] = None
        self.expires_at = 0.0
        self._renewing = threading.Lock()  # the receiving and the putting thread both renew

    def _body(self) -> bytes:
        self.expires_at = time.time() + self.store.settings.lock_lease
        return json.dumps({"holder": self.holder, "expires": self.expires_at}).encode()

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            self.etag = self.store.conditional_put(self.upload_id, LOCK_NAME, self._body(),
                                                   if_none_match=True)
            if self.etag:
                return
            current, etag = self.store.read_object(self.upload_id, LOCK_NAME)
            if current is not None:
                holder, expires = _parse_lock(current)
                if expires < time.time() or holder in self.store._orphaned_holders:
                    # The holder died, stalled past its lease, or was ours and could not be
                    # released: take the lock over, unless somebody else did first (If-Match).
                    self.etag = self.store.conditional_put(self.upload_id, LOCK_NAME, self._body(),
                                                           if_match=etag)
                    if self.etag:
                        self.store._orphaned_holders.discard(holder)
                        log.warning("took over stale lock upload_id=%s", self.upload_id)
                        return
            if time.monotonic() >= deadline:
                raise UploadLocked(f"upload {self.upload_id} is locked by another request")
            time.sleep(0.05)

    def renew_if_due(self) -> None:
        """Extend the lease once half of it is gone (a cheap clock check otherwise)."""
        if not self.etag or self.expires_at - time.time() >= self.store.settings.lock_lease / 2:
            return
        with self._renewing:
            if self.expires_at - time.time() >= self.store.settings.lock_lease / 2:
                return
            etag = self.store.conditional_put(self.upload_id, LOCK_NAME, self._body(),
                                              if_match=self.etag)
            if not etag:
                raise UploadLocked(f"lost the lock on upload {self.upload_id}")
            self.etag = etag

    def release(self, keep_object: bool = False) -> None:
        if keep_object or not self.etag:
            return
        try:
            if self.expires_at - time.time() > RELEASE_MARGIN:
                # Our lease is still running, so nobody can have taken the lock over.
                self.store.remove_object(self.upload_id, LOCK_NAME)
                return
            current, _ = self.store.read_object(self.upload_id, LOCK_NAME)
            if current is not None and _parse_lock(current)[0] == self.holder:
                self.store.remove_object(self.upload_id, LOCK_NAME)
        except Exception:  # the lease expires on its own; this process may take it over sooner
            self.store._orphaned_holders.add(self.holder)
            log.warning("could not release lock upload_id=%s", self.upload_id)


def _parse_lock(body: bytes) -> tuple[Optional[str], float]:
    """(holder, expiry) of a lock object; an unreadable one counts as expired."""
    try:
        data = json.loads(body)
        return data.get("holder"), float(data.get("expires", 0))
    except (ValueError, AttributeError, TypeError):
        return None, 0.0


class _ChunkWriter:
    """One PATCH body cut into chunk objects: the receiving side fills a buffer while putter
    threads store the previous ones (TUS_WRITE_BUFFERS buffers in all, default two, reused).

    Chunks may finish out of order when several are put at once; the offset only ever moves
    to the end of the longest run of stored chunks from the start.
    """

    def __init__(self, store: MinioStore, info: UploadInfo, verifier: Optional[BodyVerifier],
                 lease: "_Lease"):
        self.store = store
        self.lease = lease
        self.info = info
        self.verifier = verifier
        self.size = info.chunk_size
        self.free: queue.Queue = queue.Queue()
        self.max_buffers = max(2, store.settings.write_buffers)
        self.buffers = 0  # allocated so far; at most max_buffers, reused after that
        self.full: queue.Queue = queue.Queue()
        self.order_lock = threading.Lock()
        self.in_flight: collections.deque = collections.deque()  # chunk end offsets, in order
        self.stored: set[int] = set()  # end offsets of chunks put but not yet committed
        self.error: Optional[BaseException] = None
        self.committed = info.offset
        self.bucket, self.prefix = store._location(info.id)
        self.total = chunk_count(info.length, self.size) if info.length is not None else None

    def _take_buffer(self) -> bytearray:
        if self.free.empty() and self.buffers < self.max_buffers:
            self.buffers += 1
            return bytearray(self.size)
        return self.free.get()

    def _load_head(self, buf: bytearray, index: int, head_len: int) -> None:
        """Read back the stored first `head_len` bytes of chunk `index` (0-based)."""
        key = self.prefix + chunk_key(self.info.filename, index + 1, self.total)
        with self.store._storage_errors(self.info.id):
            response = self.store.client.get_object(self.bucket, key, offset=0, length=head_len)
            try:
                view = memoryview(buf)
                got = 0
                while got < head_len:
                    n = response.readinto(view[got:head_len])
                    if not n:
                        break
                    got += n
            finally:
                response.close()
                response.release_conn()
        if got != head_len:
            raise StoredDataCorrupt(self.info.id, index + 1,
                                    f"holds {got} bytes, expected at least {head_len}")

    def _putter(self) -> None:
        while True:
            item = self.full.get()
            if item is None:
                return
            buf, index, length, end_offset = item
            try:
                if self.error is None:
                    self._put_chunk(buf, index, length)
                    self._mark_stored(end_offset)
            except BaseException as exc:  # reported by run()
                self.error = exc
            finally:
                self.free.put(buf)

    def _hand_over(self, item: tuple) -> None:
        """Queue a filled buffer for the putters, remembering the order of the chunks."""
        with self.order_lock:
            self.in_flight.append(item[3])
        self.full.put(item)

    def _mark_stored(self, end_offset: int) -> None:
        """Advance the offset over every chunk stored without a gap before it."""
        with self.order_lock:
            self.stored.add(end_offset)
            newest = None
            while self.in_flight and self.in_flight[0] in self.stored:
                newest = self.in_flight.popleft()
                self.stored.discard(newest)
            if newest is None:
                return
            if self.verifier is None:
                # The info write overlaps the next chunk PUT; the single writer thread keeps
                # the offsets in order.
                self.info_writer.submit(self._commit_offset, newest)
            else:
                self.committed = newest

    def _commit_offset(self, end_offset: int) -> None:
        """Record in the info that bytes up to `end_offset` are stored (the chunk is put)."""
        if self.error is not None:
            return
        try:
            self.info.offset = end_offset
            self.info.updated = time.time()
            self._touch_expiry()
            self.store._write_info(self.info)
            self.committed = end_offset
        except BaseException as exc:  # reported by run()
            self.error = exc

    def _put_chunk(self, buf: bytearray, index: int, length: int) -> None:
        view = memoryview(buf)[:length]
        digest = hashlib.sha256(view).hexdigest()
        key = self.prefix + chunk_key(self.info.filename, index + 1, self.total)
        self.store.put_chunk_object(self.info.id, key, view, digest)
        self.lease.renew_if_due()

    def _touch_expiry(self) -> None:
        if self.store.settings.expiration:
            self.info.expires = time.time() + self.store.settings.expiration

    def run(self, stream: BinaryIO, room: Optional[int]) -> WriteResult:
        info = self.info
        start = info.offset
        hasher = self.store._hashes.take(info.id, start)
        index, head_len = divmod(start, self.size)
        received = 0
        excess = False
        interrupted = False
        self.info_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-info")
        putters = [threading.Thread(target=self._putter, name=f"put-{info.id}", daemon=True)
                   for _ in range(self.max_buffers - 1)]
        for putter in putters:
            putter.start()
        buf = self._take_buffer()
        try:
            if head_len:
                self._load_head(buf, index, head_len)
            fill = head_len
            while self.error is None:
                want = self.size - fill
                if room is not None:
                    want = min(want, room - received)
                if want == 0:  # the body reached the upload length (or the size limit)
                    excess = _has_more(stream)
                    break
                n = _read_into(stream, memoryview(buf)[fill:fill + want])
                if n == 0:
                    interrupted = bool(getattr(stream, "interrupted", False))
                    break
                piece = memoryview(buf)[fill:fill + n]
                if hasher is not None:
                    hasher.update(piece)
                if self.verifier is not None:
                    self.verifier.update(piece)
                fill += n
                received += n
                if fill == self.size:
                    self._hand_over((buf, index, fill, start + received))
                    index += 1
                    fill = 0
                    buf = self._take_buffer()
                self.lease.renew_if_due()
            if fill > (head_len if index == start // self.size else 0) and self.error is None:
                self._hand_over((buf, index, fill, start + received))
                buf = None
        finally:
            for putter in putters:
                self.full.put(None)
            for putter in putters:
                putter.join()
            self.info_writer.shutdown(wait=True)
            if buf is not None:
                self.free.put(buf)
        new_offset = self.committed
        if self.error is not None:
            self.store._hashes.drop(info.id)
            raise self.error
        if self.verifier is not None:
            if interrupted or not self.verifier.verify():
                self.store._hashes.drop(info.id)
                raise ChecksumMismatch(
                    "the body does not match Upload-Checksum" if not interrupted
                    else "the body was cut off before Upload-Checksum could be checked")
            info.offset = new_offset
            info.updated = time.time()
            self._touch_expiry()
        if info.length is not None and info.offset == info.length and not info.completed:
            self.store._complete(info, hasher)
            self.store._write_info(info)
            if info.sha256 is None:
                self.store.schedule_digest(info.id)
        elif self.verifier is not None and received:
            self.store._write_info(info)
        if not info.completed and hasher is not None:
            self.store._hashes.put(info.id, info.offset, hasher)
        if excess:
            raise LengthExceeded(
                f"the body goes past the upload length; stored up to offset {info.offset}")
        return WriteResult(info=info, received=received, interrupted=interrupted)


def _read_into(stream, view: memoryview) -> int:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = stream.read(len(view))
    view[:len(data)] = data
    return len(data)


def _has_more(stream) -> bool:
    probe = bytearray(1)
    return _read_into(stream, memoryview(probe)) > 0


def sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
