"""The objects that hold an upload's bytes, as one writer puts them and reads them back.

* A complete chunk `<filename>.part<X>of<Y>` (or `of_` while the length is deferred) is put
  once, `If-None-Match: *`. One that exists already lies past the offset (a writer died between
  its PUT and its commit, or its body failed its checksum): it is garbage, and is replaced only
  after a claim, a HEAD for its ETag and a re-read of the newest generation that still names
  this writer, `If-Match` on that ETag (the fencing proof in writer.py).
* The bytes of a chunk that is not full yet are write-once pieces `.tus/pieces/<start>-<token>-
  <n>`: a PATCH stores only its own new bytes, never re-puts what is stored. The generation
  lists them ([start, end, key, crc32c]); when the chunk fills (or the upload reaches its
  length), they are read back into the chunk buffer (at most C bytes) and the chunk is put.
Every object carries its CRC32C (`x-amz-checksum-crc32c`), checked by MinIO on arrival.
"""
from __future__ import annotations

import logging
import mmap
import time
from typing import Callable, Optional

import urllib3

from ..cooperative import offload
from .generations import Generations
from .layout import PIECE_PREFIX, chunk_key, piece_key
from .objects import CRC32C_HEADER, Objects, crc32c_b64, storage_errors
from .recent import RecentObjects
from .store import StorageUnavailable, StoredDataCorrupt, UploadInfo, UploadNotFound, WriteFenced

# Tries at reading one piece back, and the pause before the second (doubling: 0.2 + 0.4 +
# 0.8 + 1.6 s in all), as a download's chunk reads (reader.py).
READ_ATTEMPTS = 5
RETRY_PAUSE = 0.2

log = logging.getLogger("tus_server.store")


# Bytes whose CRC32C is computed in a thread of its own (under gevent) rather than in place.
OFFLOAD_MIN = 1 << 20
# The bytes of pieces this process put lately, by (upload id, piece name), at most 16 MiB in
# all, shared by its writers. A client's next PATCH usually comes to the process that served
# its last one (kept locks), and folding a chunk reads back the pieces that PATCH put. On a
# distributed MinIO a key whose PUT a node coordinated just before it was killed can stay
# locked for one to two minutes, even though the PUT was answered: every GET of it hangs (a
# 107 s stall in a scale-out run). Read from here, such a piece costs no request at all; each
# is checked against its CRC32C as a read from MinIO is.
WRITTEN_PIECES_BYTES = 16 << 20
written_pieces = RecentObjects(WRITTEN_PIECES_BYTES, by_size=True)


def piece_size(piece: list) -> int:
    return piece[1] - piece[0]


class Parts:
    """Chunk and piece objects of one upload, for the writer with token `token`; `claim()`
    makes sure a generation naming this writer is stored (before a garbage replacement)."""

    def __init__(self, objects: Objects, generations: Generations, info: UploadInfo,
                 token: str, claim: Callable[[], None]):
        self.objects = objects
        self.generations = generations
        self.info = info
        self.token = token
        self.claim = claim
        self.bucket, self.prefix = objects.location(info.id)
        self.serial = 0
        self.loaded: set[str] = set()  # pieces already in the chunk buffer
        wait = objects.settings.chunk_answer_timeout
        self.answer_timeout = urllib3.Timeout(connect=3.0, read=wait) if wait > 0 else None

    @staticmethod
    def headers(view) -> dict:
        # MinIO checks the CRC32C on arrival (400 on a mismatch) and returns it on GET. A whole
        # chunk's is computed off the event loop under gevent (the C code releases the GIL).
        crc = offload(crc32c_b64, view) if len(view) >= OFFLOAD_MIN else crc32c_b64(view)
        return {"Content-Type": "application/octet-stream", "Content-Length": str(len(view)),
                CRC32C_HEADER: crc, "x-amz-sdk-checksum-algorithm": "CRC32C"}

    # ----------------------------------------------------------------- putting
    def put_chunk(self, view, index: int, total: Optional[int]) -> Optional[list]:
        """Put chunk `index` (0-based) whole: None, or the stand-in piece that holds its bytes
        when the chunk's own PUT got no answer in time (module docstring). Raises WriteFenced
        when a later writer has the chunk."""
        key = self.prefix + chunk_key(self.info.filename, index + 1, total)
        headers = self.headers(view)  # one CRC32C of the chunk, whichever object it goes to
        if self.answer_timeout is None:  # TUS_CHUNK_ANSWER_TIMEOUT=0: stand-ins only
            return self.put_piece(view, index * self.info.chunk_size, headers)
        try:
            etag = self.objects.put_if(self.info.id, key, view, headers, if_none_match=True,
                                       timeout=self.answer_timeout)
            if etag is None:
                etag = self._replace_garbage(key, view, headers)
        except StorageUnavailable as exc:
            log.warning("chunk PUT unanswered, storing a stand-in upload_id=%s chunk=%d: %s",
                        self.info.id, index + 1, exc)
            return self.put_piece(view, index * self.info.chunk_size, headers)
        if etag is None:
            raise WriteFenced(f"chunk {index + 1} of upload {self.info.id} was written by "
                              "another request")
        return None

    def _replace_garbage(self, key: str, view, headers: dict) -> Optional[str]:
        """A chunk exists past the offset: replace it only if no later writer has claimed."""
        self.claim()
        found = self.objects.object_etag(self.info.id, key)
        current = self.generations.read(self.info.id)
        if found is None or current.writer != self.token:
            return None
        log.info("replacing a chunk left past the offset upload_id=%s key=%s", self.info.id, key)
        return self.objects.put_if(self.info.id, key, view, headers, if_match=found,
                                   timeout=self.answer_timeout)

    def put_piece(self, view, start: int, headers: Optional[dict] = None) -> list:
        """Store bytes from file offset `start` as a new piece; its [start, end, key, crc].
        `headers`: those `headers(view)` gave already (the CRC32C is not computed again).

        A PUT unanswered within `TUS_CHUNK_ANSWER_TIMEOUT` is sent once more under the next
        name: its key may be one a dead MinIO node left locked (a balancer sent it on after
        the node that took it died), which hangs every PUT of it for minutes. A first try that
        lands after all is a piece no generation lists, deleted when the upload finishes."""
        headers = headers or self.headers(view)
        if self.answer_timeout is not None:
            try:
                return self._put_new_piece(view, start, headers, self.answer_timeout)
            except StorageUnavailable as exc:
                log.warning("piece PUT unanswered, sent again under the next name "
                            "upload_id=%s: %s", self.info.id, exc)
        return self._put_new_piece(view, start, headers, None)

    def _put_new_piece(self, view, start: int, headers: dict, timeout) -> list:
        self.serial += 1
        name = piece_key(start, self.token, self.serial)
        key = self.prefix + name
        if self.objects.put_if(self.info.id, key, view, headers, if_none_match=True,
                               timeout=timeout) is None \
                and self.objects.stored_crc32c(self.info.id, key) != headers[CRC32C_HEADER]:
            # (The same CRC32C under this writer's own name: its first try, stored by a node
            # that died before it answered, found by the balancer's second.)
            raise WriteFenced(f"piece {name} of upload {self.info.id} exists")
        if len(view) < self.info.chunk_size:  # (a stand-in is read by downloads, not here)
            written_pieces.put(self.info.id, name, bytes(view))
        return [start, start + len(view), name, headers[CRC32C_HEADER]]

    # ----------------------------------------------------------------- reading back
    def load(self, buf, pieces: list, chunk_start: int, seen: int) -> None:
        """Read `pieces` into `buf` at their place in the chunk that starts at `chunk_start`,
        each checked against the CRC32C its generation lists. A piece that is gone means a
        later writer folded it (WriteFenced) unless the state has not moved; then it is read
        again, `READ_ATTEMPTS` times in all (a MinIO node that just rejoined may miss objects
        written while it was down, or answer 503 for a few seconds), before a 503. A piece
        this process put lately is read from memory (`written_pieces`)."""
        for start, end, name, crc in pieces:
            if name in self.loaded or self._load_written(buf, start - chunk_start, end - start,
                                                         name, crc):
                self.loaded.add(name)
                continue
            for attempt in range(READ_ATTEMPTS):
                if attempt:
                    if attempt == 1 and self.generations.newest(self.info.id) > seen:
                        raise WriteFenced(f"upload {self.info.id} was changed by another "
                                          "request")
                    time.sleep(RETRY_PAUSE * 2 ** (attempt - 1))
                view = memoryview(buf)[start - chunk_start:end - chunk_start]
                try:
                    got = self._read_into(self.prefix + name, view)
                    good = got == len(view) and crc32c_b64(view) == crc
                except (UploadNotFound, StorageUnavailable):
                    good = False
                finally:
                    view.release()
                if good:
                    break
                log.info("piece unreadable upload_id=%s key=%s (try %d)", self.info.id, name,
                         attempt + 1)
            else:
                log.warning("piece unreadable upload_id=%s key=%s", self.info.id, name)
                raise StorageUnavailable(f"a piece of upload {self.info.id} cannot be read")
            self.loaded.add(name)

    def _load_written(self, buf, at: int, size: int, name: str, crc: str) -> bool:
        data = written_pieces.get(self.info.id, name)
        if data is None or len(data) != size or crc32c_b64(data) != crc:
            return False
        buf[at:at + size] = data
        return True

    def load_legacy_head(self, buf, index: int, total: Optional[int], head_len: int) -> None:
        """Versions before pieces kept the head of the current chunk in the chunk object."""
        key = self.prefix + chunk_key(self.info.filename, index + 1, total)
        view = memoryview(buf)[:head_len]
        try:
            got = self._read_into(key, view, length=head_len)
        finally:
            view.release()
        if got != head_len:
            raise StoredDataCorrupt(self.info.id, index + 1,
                                    f"holds {got} bytes, expected at least {head_len}")

    def _read_into(self, key: str, view: memoryview, length: Optional[int] = None) -> int:
        with storage_errors(self.info.id):
            response = self.objects.client.get_object(self.bucket, key, offset=0,
                                                      length=length or 0)
            try:
                got = 0
                while got < len(view):
                    n = response.readinto(view[got:])
                    if not n:
                        break
                    got += n
                return got
            finally:
                response.close()
                response.release_conn()



def fold(parts: Parts, info: UploadInfo, total: int, seen: int) -> Optional[list]:
    """Put the chunk holding the offset from its stored bytes alone (the pieces, or for state
    of earlier versions the head of the chunk object): the upload ends at the offset. The
    stand-in that holds it when its PUT got no answer, else None."""
    size = info.chunk_size
    index, head_len = divmod(info.offset, size)
    buf = mmap.mmap(-1, size)
    try:
        if info.pieces:
            parts.load(buf, info.pieces, index * size, seen)
        else:
            parts.load_legacy_head(buf, index, None, head_len)
        view = memoryview(buf)[:head_len]
        try:
            return parts.put_chunk(view, index, total)
        finally:
            view.release()
    finally:
        buf.close()


def finished_garbage(objects: Objects, info: UploadInfo) -> list[str]:
    """Once an upload is finished no writer can reference a piece or a deferred-length chunk
    any more: those left by writers that died or failed (one LIST, once per upload); the
    stand-ins are the file's bytes and stay."""
    deferred = f"{info.filename}.part"
    kept = {stand_in[2] for stand_in in info.stand_ins}
    return [name for name in objects.list_names(info.id)
            if name not in kept and (name.startswith(PIECE_PREFIX) or (
                name.startswith(deferred) and name.endswith("of_")))]
