"""MinioStore: the `Store` on MinIO, composed of the `storage` package's parts.

Per upload (see `storage/layout.py` for where each object lives):
* `.tus/info/<N>` are write-once generations of the upload's `UploadInfo` as JSON
  (`storage/generations.py`). The newest readable one's `offset` is the truth: objects are put
  first and the generation second, so a crash in between only leaves bytes past the offset,
  which are ignored, never become part of a finished file, and are replaced when it resumes.
* `<filename>.part<X>of<Y>` are the chunk objects and `.tus/pieces/` the bytes of the chunk
  not yet full, each carrying its CRC32C (`storage/writer.py` and `storage/parts.py` write
  them, `storage/reader.py` reads and verifies them).
* `.tus/lock/` holds the lock's write-once generations, with hand-over (`storage/lease.py`);
  every write is additionally fenced by S3 preconditions, so a stalled writer can never
  overwrite a later one's bytes.
* Termination writes a tombstone generation, then removes every object of the upload (lock generations included) and, in
  the bucket layout, the bucket (the prefix layout keeps the tombstone, so that a writer that
  stalled past its lease cannot bring the upload back).
"""
from __future__ import annotations

import copy
import hashlib
import io
import logging
import uuid
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Optional

from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

from ..config import Settings
from ..cooperative import offload
from .digests import DigestPasses, RunningHashes
from .generations import Generations
from .layout import (  # noqa: F401  (names tests and tools import from here)
    INDEX_PREFIX,
    INFO_NAME,
    LOCK_PREFIX,
    chunk_count,
    chunk_key,
    generation_key,
    index_marker,
)
from .instances import Instances
from .kept_locks import KeptLocks
from .lease import Lease, answer_late_requests, settle
from .objects import Objects, storage_errors
from .parts import Parts, finished_garbage, fold
from .reader import ChunkReader
from .stand_ins import chunk_key_of, copy_to_chunks, drop_settled
from .store import (
    BodyVerifier,
    LengthExceeded,
    OffsetMismatch,
    StorageUnavailable,
    UploadInfo,
    UploadLocked,
    UploadNotFound,
    WriteFenced,
    WriteResult,
    is_upload_id,
)
from .writer import ChunkWriter, mark_finished

log = logging.getLogger("tus_server.store")


class MinioStore:
    """Uploads kept chunk by chunk in MinIO; see the module docstring for the layout."""

    def __init__(self, settings: Settings, client: Optional[Minio] = None):
        self.settings = settings
        self.objects = Objects(settings, client)
        self.generations = Generations(self.objects)
        self.client = self.objects.client
        self.http = self.objects.http
        self.instances = Instances(self.objects, settings)
        self._hashes = RunningHashes()
        self._reader = ChunkReader(self.objects, self._read_info)
        self._digests = DigestPasses(self._digest_pass)
        self._settles = DigestPasses(self._settle_pass, workers=1)
        self._kept = KeptLocks(settings.lock_keep)
        self._shared_bucket_ready = False
        # Called with the info of every upload `terminate` removed, whatever asked for it (a
        # DELETE, a hook, the sweeper): the usage records forget it (storage/usage.py).
        self.on_terminated: list = []

    # ----------------------------------------------------------------- locations
    def _location(self, upload_id: str) -> tuple[str, str]:
        """(bucket, key prefix) holding one upload's objects."""
        return self.objects.location(upload_id)

    def _ensure_shared_bucket(self) -> None:
        if self._shared_bucket_ready:
            return
        try:
            self.client.make_bucket(self.settings.bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._shared_bucket_ready = True

    def _read_info(self, upload_id: str, patient: bool = False) -> UploadInfo:
        return self.generations.read(upload_id, patient)

    def read_object(self, upload_id: str, name: str):
        return self.objects.read_object(upload_id, name)

    # ----------------------------------------------------------------- Store verbs
    def create(self, info: UploadInfo) -> UploadInfo:
        bucket, _ = self._location(info.id)
        with storage_errors(info.id):
            if self.settings.layout == "prefix":
                self._ensure_shared_bucket()
                self.client.put_object(bucket, index_marker(info), io.BytesIO(b""), 0)
            else:
                self.client.make_bucket(bucket)
        if info.length == 0:
            info.completed = True
            info.sha256 = hashlib.sha256().hexdigest()
        self.generations.commit(info, after=0)
        return info

    def get(self, upload_id: str, settle_writer: bool = False,
            patient: bool = False) -> UploadInfo:
        """The upload's info; with `settle_writer`, first ask a running PATCH to hand over, so
        the offset includes what it received (HEAD); `patient`: see `Generations.read`."""
        kept = self._kept.info(upload_id)
        if kept is not None:  # the lock is ours and idle: nothing runs, nobody else commits
            return kept
        if settle_writer:
            try:
                settle(self.objects, upload_id, self.settings.handover_wait, self.instances)
            except UploadLocked:
                self._read_info(upload_id)  # removed: 404, whatever its lock still says
                raise
        return self._read_info(upload_id, patient)

    @contextmanager
    def locked(self, upload_id: str, wait: Optional[float] = None, keep_lock_object: bool = False):
        """Hold the upload against other requests in this and other processes (hand-over).

        A lock that stays busy on an upload that was removed is a 404, not a 423: a hand-over
        request that landed as the upload was deleted may name a holder that already left."""
        wait = self.settings.handover_wait if wait is None else wait
        lease = self._kept.take(upload_id)
        if lease is None:
            try:
                lease = Lease(self.objects, upload_id, self.settings.lock_lease,
                              self.instances).acquire(wait)
            except UploadLocked:
                self._read_info(upload_id)
                raise
        lease.keep_with = None
        try:
            yield lease
        except BaseException:
            lease.release(keep_object=keep_lock_object)
            raise
        if lease.keep_with is None or not self._kept.keep(lease, lease.keep_with):
            lease.release(keep_object=keep_lock_object)

    def write(self, upload_id: str, offset: int, stream: BinaryIO, length_hint: Optional[int],
              verifier: Optional[BodyVerifier] = None,
              limit: Optional[int] = None, known: Optional[UploadInfo] = None) -> WriteResult:
        """Append the body in `stream` at `offset` (storage/writer.py has the steps).

        `limit` caps the total size of an upload whose length is deferred (Tus-Max-Size).
        With a `verifier`, nothing is counted unless the whole body verifies. `known` is the
        info the caller just read: used instead of reading it again (every generation written
        from it must be newer than it, so a stale one is caught, and answered as a moved
        offset when nothing was stored yet).
        """
        with self.locked(upload_id) as lease:
            if known is not None and known.version is not None and known.id == upload_id:
                info = copy.deepcopy(known)
            else:
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
            hasher = self._hashes.take(upload_id, offset)
            writer = ChunkWriter(self.objects, self.generations, self.settings, info, lease,
                                 verifier, hasher)
            try:
                result = writer.run(stream, room)
                if not result.interrupted:  # a body cut short: its client may be gone
                    lease.keep_with = result.info
            except WriteFenced:
                self._hashes.drop(upload_id)
                if writer.committed == offset:  # nothing of ours counted: did the offset move?
                    current = self._read_info(upload_id)
                    if current.offset != offset:
                        raise OffsetMismatch(current.offset, offset) from None
                raise
            except BaseException:
                self._hashes.drop(upload_id)
                raise
        info = result.info
        if info.completed:
            self._hashes.drop(upload_id)
            if info.sha256 is None:
                self.schedule_digest(upload_id)
            self._schedule_settle(info)
        elif hasher is not None:
            self._hashes.put(upload_id, info.offset, hasher)
        return result

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        """Fix the length of a deferred upload: its complete `of_` chunks are copied to
        `of<Y>` (new keys), and when the length is the offset, the pieces of the last chunk are
        folded into `part<Y>of<Y>`. Both are cut at the offset: bytes past it (a body that
        failed its checksum, a writer killed before its commit) never enter the file."""
        with self.locked(upload_id):
            info = self._read_info(upload_id)
            if info.length is not None:
                return info
            if length < info.offset:
                raise LengthExceeded(
                    f"Upload-Length {length} is below the {info.offset} bytes already stored")
            bucket, prefix = self._location(upload_id)
            size = info.chunk_size
            total = chunk_count(length, size)
            full = info.offset // size  # chunks wholly below the offset
            standing = {stand_in[0] // size + 1 for stand_in in info.stand_ins}
            with storage_errors(upload_id):
                for index in sorted(set(range(1, full + 1)) - standing):
                    self.client.copy_object(
                        bucket, prefix + chunk_key(info.filename, index, total),
                        CopySource(bucket, prefix + chunk_key(info.filename, index, None)))
            base, seen = info.version or 0, info.seen
            before = copy.deepcopy(info)
            info.length = length
            dropped = [piece[2] for piece in info.pieces] if info.offset == length else []
            token = uuid.uuid4().hex
            if info.offset == length and info.offset % size:
                claimed = []

                def claim() -> None:  # before replacing a chunk left by an earlier attempt
                    if not claimed:
                        before.writer = token
                        claimed.append(self.generations.commit(before, max(seen, base)))

                stand_in = fold(Parts(self.objects, self.generations, info, token, claim),
                                info, total, seen)
                info.pieces = []
                info.stand_ins += [stand_in] if stand_in else []
                seen = max([seen] + claimed)
            if info.offset == length:
                mark_finished(info, self._hashes.take(upload_id, info.offset))
                self._hashes.drop(upload_id)
                dropped, info.garbage = dropped + info.garbage, []
            info.writer = token
            last = self.generations.commit(info, max(seen, base))
            names = [chunk_key(info.filename, index, None) for index in range(1, full + 1)]
            names += dropped + self.generations.prune_names(base, last)
            if info.completed:
                names += finished_garbage(self.objects, info)
            self.objects.remove_names_later(upload_id, sorted(set(names)))
            if info.completed and info.sha256 is None:
                self.schedule_digest(upload_id)
            self._schedule_settle(info)
            return info

    def terminate(self, upload_id: str) -> None:
        bucket = self._location(upload_id)[0]
        with self.locked(upload_id, keep_lock_object=True):
            info = self._read_info(upload_id)
            # A tombstone first: reads answer 404 from now on, and a stalled writer's later
            # generations land below it (or hit its number and stop).
            info.terminated, info.writer = True, None
            tombstone = generation_key(self.generations.commit(info, info.seen))
            with storage_errors(upload_id):
                for attempt in range(3):
                    names = [name for name in self.objects.list_names(upload_id)
                             if name != tombstone]
                    if not self.objects.remove_names(upload_id, names, patient=True):
                        raise StorageUnavailable(f"could not remove the objects of {upload_id}")
                    if self.settings.layout == "prefix":
                        self.client.remove_object(bucket, index_marker(info))
                        break
                    self.objects.remove_names(upload_id, [tombstone], patient=True)
                    try:
                        self.client.remove_bucket(bucket)
                        break
                    except S3Error as exc:  # a stalled writer put an object meanwhile
                        if exc.code != "BucketNotEmpty" or attempt == 2:
                            raise
        if self.settings.layout == "prefix":  # in the bucket layout the lock went with it
            answer_late_requests(self.objects, upload_id)
        self._hashes.drop(upload_id)
        for listener in self.on_terminated:
            try:
                listener(info)
            except Exception:  # the upload is gone; what counted it is repaired by `cleanup`
                log.warning("after removing upload_id=%s, %r failed", upload_id, listener,
                            exc_info=True)

    def open(self, upload_id: str, start: int, end: int,
             info: Optional[UploadInfo] = None) -> Iterator[bytes]:
        """Bytes [start, end) of a finished upload, read chunk by chunk and verified."""
        info = info or self._read_info(upload_id)
        self._schedule_settle(info)
        return self._reader.open(info, start, end)

    def list_ids(self) -> list[str]:
        """Upload ids, newest first, without reading any upload's objects."""
        with storage_errors():
            if self.settings.layout == "prefix":
                self._ensure_shared_bucket()
                # Marker names sort newest first: `<inverted created ms>-<upload id>`.
                return [obj.object_name[len(INDEX_PREFIX):].split("-", 1)[1]
                        for obj in self.client.list_objects(self.settings.bucket,
                                                            prefix=INDEX_PREFIX)]
            buckets = [b for b in self.client.list_buckets() if is_upload_id(b.name)]
        buckets.sort(key=lambda b: b.creation_date, reverse=True)
        return [b.name for b in buckets]

    def list_page(self, after: Optional[str], limit: int) -> tuple[list[str], Optional[str]]:
        """Up to `limit` upload ids, newest first, after the cursor `after` (None: from the
        newest); and the cursor of the next page (None: no more).

        In the prefix layout this lists only as far as the page reaches (index markers sort
        newest first), so a page costs the same with 100 or 100,000 uploads stored. The
        bucket layout has no such index (S3 lists buckets whole), so its pages cost O(n).
        """
        if self.settings.layout != "prefix":
            ids = self.list_ids()
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start:start + limit]
            return page, page[-1] if start + limit < len(ids) and page else None
        with storage_errors():
            self._ensure_shared_bucket()
            start_after = INDEX_PREFIX + after if after else None
            names = []
            for obj in self.client.list_objects(self.settings.bucket, prefix=INDEX_PREFIX,
                                                start_after=start_after):
                names.append(obj.object_name[len(INDEX_PREFIX):])
                if len(names) > limit:
                    break
        ids = [name.split("-", 1)[1] for name in names[:limit]]
        return ids, names[limit - 1] if len(names) > limit else None

    def list(self) -> list[UploadInfo]:
        infos = []
        for upload_id in self.list_ids():
            try:
                infos.append(self._read_info(upload_id))
            except UploadNotFound:
                continue  # terminated while we listed
        return infos

    def expire(self, now: float) -> list[str]:
        """Remove uploads past their expiry (unfinished ones, and empty ones, which get an
        expiry at creation) and finished ones past retention."""
        removed = []
        for info in self.list():
            stale = info.expires is not None and info.expires < now
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
            with storage_errors():
                self.client.bucket_exists(self.settings.bucket)
            return True
        except StorageUnavailable:
            return False

    # ----------------------------------------------------------------- stand-ins
    def _schedule_settle(self, info: UploadInfo) -> None:
        """A finished upload that has stand-ins gets them copied to its chunks' names in the
        background (stand_ins.py); until that succeeds, each download asks again."""
        if info.completed and info.stand_ins:
            self._settles.schedule(info.id)

    def _settle_pass(self, upload_id: str) -> None:
        """Copy the stand-ins without the lock (nothing else writes a finished upload's chunk
        names, and a copy of the same bytes twice is harmless), then hold the lock only to
        commit, so no request waits for the copying."""
        info = self._read_info(upload_id)
        if not (info.completed and info.stand_ins):
            return
        done = copy_to_chunks(self.objects, info)
        if not done:
            return
        try:
            with self.locked(upload_id, wait=10.0):
                names = drop_settled(self.generations, self._read_info(upload_id), done)
        except UploadNotFound:  # terminated meanwhile: the copies must not outlive it
            self.objects.remove_names(upload_id, [chunk_key_of(info, s) for s in done],
                                      patient=True)
            raise
        except (UploadLocked, StorageUnavailable) as exc:  # the next download asks again
            log.info("stand-ins not settled yet upload_id=%s: %s", upload_id, exc)
            return
        if names:
            self.objects.remove_names(upload_id, names)
            log.info("stand-ins settled upload_id=%s", upload_id)

    # ----------------------------------------------------------------- digests
    def schedule_digest(self, upload_id: str) -> None:
        """Compute a finished upload's SHA-256 from its chunks in the background."""
        self._digests.schedule(upload_id)

    def _digest_pass(self, upload_id: str) -> None:
        info = self._read_info(upload_id)
        if info.sha256 or not info.completed:
            return
        hasher = hashlib.sha256()
        for piece in self.open(upload_id, 0, info.length or 0, info):
            offload(hasher.update, piece)  # in gevent's threads: the pass may hash GiBs
        with self.locked(upload_id, wait=30.0):
            info = self._read_info(upload_id)
            if info.sha256:  # another process's pass got there first
                return
            info.sha256, info.writer = hasher.hexdigest(), None
            self.generations.commit(info, info.seen)
        log.info("digest computed upload_id=%s", upload_id)
