"""A PATCH body cut into chunk objects, every write fenced against a stale writer.

A PATCH whose offset falls inside chunk k reads back the stored head of chunk k, appends body
bytes until the chunk is full, puts it, advances the offset, and repeats; when the body ends
(or is cut, stalls, or the request is asked to hand over), the partial chunk is put and the
offset advanced to what was stored. The body is received into one of `TUS_WRITE_BUFFERS`
reusable chunk buffers while putter threads store the others; chunks may finish out of order,
and the offset only ever moves to the end of the longest run of stored chunks from the start.

Fencing (why a writer that lost the lease can change nothing a later writer stored):
1. Claim. Before it uses a chunk ETag it did not produce itself (2 and 3 below), a writer
   writes the info with its own random `writer` token, `If-Match` on the ETag it read. Every
   info commit is `If-Match` on the ETag of the writer's own previous write, so after any later
   writer's claim or commit, an earlier writer's commits get 412.
2. Chunk PUTs are conditional too: the chunk holding the start offset with `If-Match` on the
   ETag of the head read before the claim (a successful claim proves no later writer had
   started then), every other chunk with `If-None-Match: *`. Bytes of a later writer therefore
   always change an ETag that an earlier writer's PUT depends on, and its PUT gets 412.
3. A chunk left past the offset by a writer that died is replaced only after a HEAD for its
   ETag followed by a re-read of the info that still names this writer: any later writer
   would have claimed before writing it.
A writer that never claimed put only `If-None-Match: *` chunks: a later writer that meets one
of them claims before replacing it, so the earlier writer's commit fails. So the info's offset
only ever covers bytes written by the writer that committed it, and a writer that gets 412
anywhere stops at once (423), whatever the clocks say.
"""
from __future__ import annotations

import collections
import logging
import mmap
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Optional

from ..config import Settings
from .layout import chunk_count, chunk_key
from .lease import Lease
from .objects import CRC32C_HEADER, Objects, crc32c_b64, storage_errors
from .store import (
    BodyVerifier,
    ChecksumMismatch,
    LengthExceeded,
    ServerStopping,
    StoredDataCorrupt,
    UploadInfo,
    UploadTakenOver,
    WriteFenced,
    WriteResult,
)

log = logging.getLogger("tus_server.store")


class ChunkWriter:
    def __init__(self, objects: Objects, settings: Settings, info: UploadInfo, info_etag: str,
                 lease: Lease, verifier: Optional[BodyVerifier], hasher):
        self.objects = objects
        self.settings = settings
        self.info = info
        self.info_etag = info_etag
        self.lease = lease
        self.verifier = verifier
        self.hasher = hasher  # running whole-file SHA-256, or None when the chain is broken
        self.token = uuid.uuid4().hex
        self.size = info.chunk_size
        self.bucket, self.prefix = objects.location(info.id)
        self.total = chunk_count(info.length, self.size) if info.length is not None else None
        self.free: queue.Queue = queue.Queue()
        self.full: queue.Queue = queue.Queue()
        self.max_buffers = max(2, settings.write_buffers)
        self.buffers: list[mmap.mmap] = []
        self.order_lock = threading.Lock()
        self.in_flight: collections.deque = collections.deque()  # chunk end offsets, in order
        self.stored: set[int] = set()  # end offsets of chunks put but not yet committed
        self.error: Optional[BaseException] = None
        self.committed = info.offset
        self.head_index: Optional[int] = None  # the chunk whose head was read, and its ETag
        self.head_etag: Optional[str] = None
        self.stream = None
        self.claimed = False
        self.info_guard = threading.Lock()  # the claim and the commits write the info in turn

    # ----------------------------------------------------------------- buffers
    def _take_buffer(self) -> mmap.mmap:
        """A chunk buffer; anonymous mappings take memory only as bytes arrive, and give it
        back to the OS when closed (no heap growth after many uploads)."""
        if self.free.empty() and len(self.buffers) < self.max_buffers:
            buf = mmap.mmap(-1, self.size)
            self.buffers.append(buf)
            return buf
        return self.free.get()

    def _close_buffers(self) -> None:
        for buf in self.buffers:
            try:
                buf.close()
            except BufferError:  # a view is still referenced somewhere; the GC frees it
                pass

    # ----------------------------------------------------------------- reads before the claim
    def _load_head(self, buf, index: int, head_len: int) -> None:
        """Read back the stored first `head_len` bytes of chunk `index` (0-based) and its ETag."""
        key = self.prefix + chunk_key(self.info.filename, index + 1, self.total)
        with storage_errors(self.info.id):
            response = self.objects.client.get_object(self.bucket, key, offset=0, length=head_len)
            try:
                view = memoryview(buf)
                got = 0
                while got < head_len:
                    n = response.readinto(view[got:head_len])
                    if not n:
                        break
                    got += n
                del view
                self.head_etag = response.headers.get("ETag", "").strip('"')
            finally:
                response.close()
                response.release_conn()
        if got != head_len:
            raise StoredDataCorrupt(self.info.id, index + 1,
                                    f"holds {got} bytes, expected at least {head_len}")
        self.head_index = index

    def _claim(self) -> None:
        """Write the info with this writer's token before using an ETag it did not produce.

        Only needed for the head read and for replacing a leftover chunk: a PATCH that starts
        at a chunk boundary puts only `If-None-Match: *` chunks and skips it (one request less).
        """
        with self.info_guard:
            if self.claimed:
                return
            self.info.writer = self.token
            self.info_etag = self.objects.write_info(self.info, self.info_etag)
            self.claimed = True

    # ----------------------------------------------------------------- stopping
    def _on_stop(self, reason: str) -> None:
        """From the lease keeper: stop reading now; on "lost", store nothing more either."""
        if reason == "lost" and self.error is None:
            self.error = WriteFenced(f"lost the lock on upload {self.info.id}")
        stop = getattr(self.stream, "stop", None)
        if stop is not None:
            stop(reason)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    # ----------------------------------------------------------------- putting
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
                if self.error is None:
                    self.error = exc
            finally:
                self.free.put(buf)

    def _put_chunk(self, buf, index: int, length: int) -> None:
        view = memoryview(buf)[:length]
        try:
            key = self.prefix + chunk_key(self.info.filename, index + 1, self.total)
            # MinIO checks the CRC32C on arrival (400 on a mismatch) and returns it on GET.
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Length": str(length),
                       CRC32C_HEADER: crc32c_b64(view),
                       "x-amz-sdk-checksum-algorithm": "CRC32C"}
            if index == self.head_index:
                etag = self.objects.put_if(self.info.id, key, view, headers,
                                           if_match=self.head_etag)
            else:
                etag = self.objects.put_if(self.info.id, key, view, headers,
                                           if_none_match=True)
                if etag is None:
                    etag = self._replace_leftover(key, view, headers)
            if etag is None:
                raise WriteFenced(f"chunk {index + 1} of upload {self.info.id} was written by "
                                  "another request")
        finally:
            try:
                view.release()
            except BufferError:  # the HTTP client still holds a view of it; the GC frees it
                pass

    def _replace_leftover(self, key: str, view, headers: dict) -> Optional[str]:
        """A chunk exists past the offset: replace it only if no later writer has claimed."""
        self._claim()
        found = self.objects.object_etag(self.info.id, key)
        current, _ = self.objects.read_info(self.info.id)
        if found is None or current.writer != self.token:
            return None
        log.info("replacing a chunk left past the offset upload_id=%s key=%s", self.info.id, key)
        return self.objects.put_if(self.info.id, key, view, headers, if_match=found)

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
            with self.info_guard:
                self.info.offset = end_offset
                self.info.updated = time.time()
                self._touch_expiry()
                if end_offset == self.info.length:
                    # The last chunk: its commit also finishes the upload (one write less).
                    # Every byte went through the running hash before this chunk was queued.
                    mark_finished(self.info, self.hasher)
                self.info_etag = self.objects.write_info(self.info, self.info_etag)
                self.committed = end_offset
        except BaseException as exc:  # reported by run()
            if self.error is None:
                self.error = exc

    def _touch_expiry(self) -> None:
        if self.settings.expiration:
            self.info.expires = time.time() + self.settings.expiration

    # ----------------------------------------------------------------- the body
    def run(self, stream: BinaryIO, room: Optional[int]) -> WriteResult:
        info = self.info
        start = info.offset
        index, head_len = divmod(start, self.size)
        self.stream = stream
        received = 0
        at_room = False
        buf = self._take_buffer()
        if head_len:
            self._load_head(buf, index, head_len)
            self._claim()
        self.lease.on_stop = self._on_stop
        if self.lease.stop_reason:  # asked before the callback was in place
            self._on_stop(self.lease.stop_reason)

        self.info_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-info")
        putters = [threading.Thread(target=self._putter, name=f"put-{info.id}", daemon=True)
                   for _ in range(self.max_buffers - 1)]
        for putter in putters:
            putter.start()
        try:
            fill = head_len
            while self.error is None:
                want = self.size - fill
                if room is not None:
                    want = min(want, room - received)
                if want == 0:  # the body reached the upload length (or the size limit)
                    at_room = True
                    break
                view = memoryview(buf)[fill:fill + want]
                n = _read_into(stream, view)
                if n:
                    piece = view[:n]
                    if self.hasher is not None:
                        self.hasher.update(piece)
                    if self.verifier is not None:
                        self.verifier.update(piece)
                    piece.release()
                view.release()
                if n == 0:
                    break
                fill += n
                received += n
                if fill == self.size:
                    self._hand_over((buf, index, fill, start + received))
                    index += 1
                    fill = 0
                    buf = self._take_buffer()
            if fill > (head_len if index == start // self.size else 0) and self.error is None:
                self._hand_over((buf, index, fill, start + received))
                buf = None
        except BaseException as exc:  # the putters must not commit after a failed read
            if self.error is None:
                self.error = exc
        finally:
            for _ in putters:
                self.full.put(None)
            for putter in putters:
                putter.join()
            self.info_writer.shutdown(wait=True)
            if buf is not None:
                self.free.put(buf)
            self.lease.on_stop = None
            self._close_buffers()
        return self._finish(stream, received, at_room)

    def _finish(self, stream, received: int, at_room: bool) -> WriteResult:
        info = self.info
        self._check()
        interrupted = bool(getattr(stream, "interrupted", False))
        if self.verifier is not None:
            if interrupted or not self.verifier.verify():
                raise ChecksumMismatch(
                    "the body does not match Upload-Checksum" if not interrupted
                    else "the body was cut off before Upload-Checksum could be checked")
            info.offset = self.committed
            info.updated = time.time()
            self._touch_expiry()
        finished = info.length is not None and info.offset == info.length and not info.completed
        if finished:
            mark_finished(self.info, self.hasher)
        if finished or (self.verifier is not None and received):
            self.info_etag = self.objects.write_info(info, self.info_etag)
        # A stop that cut the body short is said as such; one after its end changes nothing.
        reason = None if getattr(stream, "complete", True) else getattr(stream, "stop_reason", None)
        if reason == "shutdown":
            raise ServerStopping(f"the server is shutting down; stored up to offset {info.offset}")
        if reason == "handover" and not info.completed:
            raise UploadTakenOver(f"another request took over the upload; stored up to offset "
                                  f"{info.offset}")
        if at_room and _has_more(stream):
            raise LengthExceeded(
                f"the body goes past the upload length; stored up to offset {info.offset}")
        return WriteResult(info=info, received=received, interrupted=interrupted)


def mark_finished(info: UploadInfo, hasher) -> None:
    """All bytes are stored: the upload no longer expires, and its digest is the running hash
    (when this process saw every byte in order; otherwise a background pass computes it)."""
    info.completed = True
    info.expires = None
    if hasher is not None:
        info.sha256 = hasher.hexdigest()


def _read_into(stream, view: memoryview) -> int:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = stream.read(len(view))
    view[:len(data)] = data
    return len(data)


def _has_more(stream) -> bool:
    """Is there body past what we stored? Asked only after the stored bytes are committed."""
    has_more = getattr(stream, "has_more", None)
    if has_more is not None:
        return has_more()
    probe = bytearray(1)
    return _read_into(stream, memoryview(probe)) > 0
