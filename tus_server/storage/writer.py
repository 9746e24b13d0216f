"""A PATCH body cut into chunk objects and pieces, every state write a new generation.

The body is received into one of `TUS_WRITE_BUFFERS` reusable chunk buffers while putter
threads store the others. A buffer that fills a chunk (or reaches the upload's length) is put
as the chunk object; the bytes of the current chunk that earlier PATCHes stored as pieces are
read back into it first (at most C bytes per chunk). A body that ends inside a chunk stores
only its own new bytes, as a piece (parts.py). Chunks may finish out of order; the offset only
ever moves to the end of the longest run of stored objects from the start, each move a new
generation (generations.py) that lists the pieces of the chunk not yet full. So MinIO traffic
is O(bytes received) + O(C) per chunk, whatever the PATCH sizes.

Fencing (why a writer that lost the lease can change nothing the truth depends on):
1. Nothing the newest generation references is ever overwritten: generations and pieces are
   new keys (`If-None-Match: *`); a complete chunk below the offset is never written again; the
   chunk holding the offset is not an object yet (its bytes are pieces).
2. Every generation a writer writes names it (`writer`) and targets a number above every one it
   has seen, `If-None-Match: *`. Each number is written by one writer only, so once a later
   writer has committed (read generation g, wrote g + 1), an earlier writer's next commit hits a
   taken number, gets 412 and stops; a commit into a number that was pruned meanwhile lands
   below the newest, is never read, and the writer's check at the end of its request says so.
3. Objects past the offset are garbage: a chunk left there by a writer that died (or whose
   body failed its checksum) is replaced only after a claim (a generation naming this writer),
   a HEAD for its ETag and a re-read of the newest generation that still names this writer,
   `If-Match` on that ETag. A later writer would have claimed before writing it, changing
   either the newest generation (this writer sees it and does not replace) or the ETag (this
   writer's PUT gets 412).
4. A generation references only objects its writer stored before it (chunks below the offset,
   pieces, CRC32C listed) or that an earlier generation referenced; and a writer that gets 412
   anywhere, or finds a referenced piece gone while the state moved on, stops at once.
So the newest generation's offset only ever covers bytes that the writers of the chain of
generations leading to it stored and committed, whatever the clocks say.
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
from ..cooperative import offload
from .generations import Generations
from .commits import Commits
from .layout import chunk_count
from .lease import Lease
from .objects import Objects
from .parts import Parts, piece_size
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

# Pieces a chunk holds before new ones are merged with the last ones.
FREE_PIECES = 4
# Bytes hashed in a thread of their own (under gevent) rather than in place.
OFFLOAD_MIN = 1 << 20


class ChunkWriter:
    def __init__(self, objects: Objects, generations: Generations, settings: Settings,
                 info: UploadInfo, lease: Lease, verifier: Optional[BodyVerifier], hasher):
        self.objects = objects
        self.generations = generations
        self.settings = settings
        self.info = info  # a private copy, changed by each commit
        self.lease = lease
        self.verifier = verifier
        self.hasher = hasher  # running whole-file SHA-256, or None when the chain is broken
        self.token = uuid.uuid4().hex
        self.size = info.chunk_size
        self.total = chunk_count(info.length, self.size) if info.length is not None else None
        self.commits = Commits(objects, generations, info, self.token, settings.lock_lease,
                               started=getattr(lease, "confirmed", None),
                               still_ours=getattr(lease, "still_ours", None),
                               unchallenged=getattr(lease, "unchallenged", None),
                               skip_first=getattr(lease, "took_over_writer", False))
        self.parts = Parts(objects, generations, info, self.token, self._claim)
        self.free: queue.Queue = queue.Queue()
        self.full: queue.Queue = queue.Queue()
        self.max_buffers = max(2, settings.write_buffers)
        self.buffers: list[mmap.mmap] = []
        self.order_lock = threading.Lock()
        self.in_flight: collections.deque = collections.deque()  # object end offsets, in order
        self.stored: set[int] = set()  # end offsets of objects put but not yet committed
        # end offset -> (pieces, dropped keys, stand-ins) its generation lists once stored
        self.after: dict[int, tuple[list, list, list]] = {}
        self.staged: tuple[list, list, list] = (list(info.pieces), [], [])  # with a verifier
        self.error: Optional[BaseException] = None
        self.committed = info.offset
        self.stream = None
        self.info_guard = threading.Lock()  # the claim and the commits write in turn

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

    # ----------------------------------------------------------------- generations
    def _claim(self) -> None:
        """Before replacing garbage: make sure a generation names this writer."""
        with self.info_guard:
            if self.commits.last is None:
                self.commits.commit(self.info)

    def _adopt_legacy_head(self, buf, index: int, head_len: int) -> None:
        """State written before pieces existed keeps the head of the current chunk in the
        chunk object itself, which the state references: copy it to a piece and commit that,
        so the chunk object becomes garbage that may be replaced (once per such upload)."""
        self.parts.load_legacy_head(buf, index, self.total, head_len)
        view = memoryview(buf)[:head_len]
        try:
            piece = self.parts.put_piece(view, index * self.size)
        finally:
            view.release()
        self.commits.mine.append(piece[2])
        self.parts.loaded.add(piece[2])
        with self.info_guard:
            self.info.pieces = [piece]
            self.commits.commit(self.info)
        self.staged = ([piece], [], [])

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
            buf = item[0]
            try:
                if self.error is None:
                    self._put(*item)
                    self._mark_stored(item[3])
            except BaseException as exc:  # reported by run()
                if self.error is None:
                    self.error = exc
            finally:
                self.free.put(buf)

    def _put(self, buf, index: int, length: int, end_offset: int, lo: Optional[int],
             load: list) -> None:
        """Put bytes [lo, length) of the buffer of chunk `index` as a piece, or (lo None) the
        whole chunk, after reading the stored pieces in `load` into it."""
        chunk_start = index * self.size
        if load:
            self.parts.load(buf, load, chunk_start, self.commits.seen)
        view = memoryview(buf)[lo or 0:length]
        try:
            if lo is None:
                stand_in = self.parts.put_chunk(view, index, self.total)
                if stand_in is not None:
                    self.commits.mine.append(stand_in[2])
                    self.after[end_offset][2].append(stand_in)
            else:
                piece = self.parts.put_piece(view, chunk_start + lo)
                self.commits.mine.append(piece[2])
                self.after[end_offset][0].append(piece)
        finally:
            try:
                view.release()
            except BufferError:  # the HTTP client still holds a view of it; the GC frees it
                pass

    def _hand_over(self, buf, index: int, length: int, end_offset: int,
                   lo: Optional[int] = None, load: tuple = (),
                   pieces: tuple = (), dropped: tuple = ()) -> None:
        """Queue a filled buffer for the putters, remembering the order of the objects and
        the pieces the state lists once it is stored."""
        with self.order_lock:
            self.in_flight.append(end_offset)
            self.after[end_offset] = (list(pieces), list(dropped), [])
        self.full.put((buf, index, length, end_offset, lo, list(load)))

    def _mark_stored(self, end_offset: int) -> None:
        """Advance the offset over every object stored without a gap before it."""
        with self.order_lock:
            self.stored.add(end_offset)
            newest, pieces, dropped, stand_ins = None, None, [], []
            while self.in_flight and self.in_flight[0] in self.stored:
                newest = self.in_flight.popleft()
                self.stored.discard(newest)
                pieces, more, spilled = self.after.pop(newest)
                dropped += more
                stand_ins += spilled
            if newest is None:
                return
            if self.verifier is None:
                # The commit overlaps the next chunk PUT; the single commit thread keeps the
                # offsets in order.
                self.info_writer.submit(self._commit_offset, newest, pieces, dropped, stand_ins)
            else:
                self.committed = newest
                self.staged = (pieces, self.staged[1] + dropped, self.staged[2] + stand_ins)

    def _commit_offset(self, end_offset: int, pieces: list, dropped: list,
                       stand_ins: list) -> None:
        """Record in a new generation that bytes up to `end_offset` are stored."""
        if self.error is not None:
            return
        try:
            with self.info_guard:
                self._advance(end_offset, pieces, dropped, stand_ins)
                self.commits.commit(self.info)
                self.committed = end_offset
        except BaseException as exc:  # reported by run()
            if self.error is None:
                self.error = exc

    def _advance(self, end_offset: int, pieces: list, dropped: list, stand_ins: list) -> None:
        info = self.info
        info.offset = end_offset
        info.pieces = pieces
        info.garbage = info.garbage + dropped
        info.stand_ins = info.stand_ins + stand_ins
        info.updated = time.time()
        if self.settings.expiration:
            info.expires = time.time() + self.settings.expiration
        if end_offset == info.length:
            # The last chunk: its commit also finishes the upload (one write less). Every
            # byte went through the running hash before this chunk was queued.
            mark_finished(info, self.hasher)

    # ----------------------------------------------------------------- the body
    def run(self, stream: BinaryIO, room: Optional[int]) -> WriteResult:
        info = self.info
        start = info.offset
        first, head_len = divmod(start, self.size)
        index = first
        self.stream = stream
        received = 0
        at_room = False
        buf = self._take_buffer()
        head = list(info.pieces) if head_len else []  # the stored bytes of chunk `first`
        if head_len and not head:
            self._adopt_legacy_head(buf, index, head_len)
            head = list(self.info.pieces)
        elif sum(piece_size(p) for p in head) != head_len:
            raise StoredDataCorrupt(info.id, index + 1, "its pieces do not reach the offset")
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
            hashed = fill  # bytes of `buf` already in the running hash
            while self.error is None:
                want = self.size - fill
                if room is not None:
                    want = min(want, room - received)
                if want == 0:  # the body reached the upload length (or the size limit)
                    at_room = True
                    break
                view = memoryview(buf)[fill:fill + want]
                n = _read_into(stream, view)
                if n and self.verifier is not None:
                    piece = view[:n]
                    self.verifier.update(piece)
                    piece.release()
                view.release()
                if n == 0:
                    break
                fill += n
                received += n
                if fill == self.size:
                    self._hash(buf, hashed, fill)
                    self._hand_over_chunk(buf, index, fill, start + received,
                                          head if index == first else [])
                    index += 1
                    fill = hashed = 0
                    buf = self._take_buffer()
            stored = head_len if index == first else 0
            if fill > stored and self.error is None:
                self._hash(buf, hashed, fill)
                end = start + received
                existing = head if index == first else []
                if end == info.length:  # the last chunk, short: put it whole
                    self._hand_over_chunk(buf, index, fill, end, existing)
                else:
                    self._hand_over_piece(buf, index, stored, fill, end, existing)
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
        try:
            return self._finish(stream, received, at_room)
        except BaseException:
            self.commits.drop_uncommitted(self.info.id)
            raise

    def _hash(self, buf, lo: int, hi: int) -> None:
        """Bytes [lo, hi) of a buffer into the running hash, before the buffer is handed over:
        once per chunk, not per read, and off the event loop under gevent (`offload`), so the
        worker's other connections go on while a chunk is hashed on another core."""
        if self.hasher is None or hi <= lo:
            return
        view = memoryview(buf)[lo:hi]
        try:
            if hi - lo >= OFFLOAD_MIN:
                offload(self.hasher.update, view)
            else:
                self.hasher.update(view)
        finally:
            view.release()

    def _hand_over_chunk(self, buf, index: int, fill: int, end: int, head: list) -> None:
        """A complete chunk (or the short last one): the stored pieces of it are read in, and
        dropped by the generation that records it."""
        self._hand_over(buf, index, fill, end, load=head, dropped=[p[2] for p in head])

    def _hand_over_piece(self, buf, index: int, lo: int, fill: int, end: int,
                         existing: list) -> None:
        """The body ended inside chunk `index`: its bytes [lo, fill) become a piece. Once the
        chunk holds FREE_PIECES, the last pieces smaller than twice the new one are merged into
        it (read into the buffer, stored again as part of it): then each further piece is at
        most half the one before, so a chunk holds at most FREE_PIECES + log2(C) pieces, and a
        merged byte lands in a piece at least 1.5 times larger each time it is rewritten."""
        kept = list(existing)
        load, dropped = [], []
        while len(kept) >= FREE_PIECES and piece_size(kept[-1]) < 2 * (fill - lo):
            merged = kept.pop()
            load.append(merged)
            dropped.append(merged[2])
            lo = merged[0] - index * self.size
        self._hand_over(buf, index, fill, end, lo=lo, load=load, pieces=kept, dropped=dropped)

    def _finish(self, stream, received: int, at_room: bool) -> WriteResult:
        info = self.info
        self._check()
        interrupted = bool(getattr(stream, "interrupted", False))
        if self.verifier is not None:
            if interrupted or not self.verifier.verify():
                raise ChecksumMismatch(
                    "the body does not match Upload-Checksum" if not interrupted
                    else "the body was cut off before Upload-Checksum could be checked")
            if received:
                self._advance(self.committed, *self.staged)
        finished = info.length is not None and info.offset == info.length and not info.completed
        if finished:
            mark_finished(self.info, self.hasher)
        if finished or (self.verifier is not None and received):
            with self.info_guard:
                self.commits.commit(self.info)
        self.commits.end_request(self.info)
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
