"""The whole file's SHA-256 (`Repr-Digest`), without a second read of the file on the request
path: the process that receives an upload's bytes in order keeps the hash running; when that
chain was broken (a restart, another process took a PATCH), a background pass over the stored
chunks computes it once the upload is finished. The passes run in one small bounded pool, so
many finished uploads at once cannot make the server read and hash without limit.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .store import UploadNotFound, WriteFenced

log = logging.getLogger("tus_server.store")

# Background digest passes running at once, per process; more wait in the pool's queue.
DIGEST_WORKERS = 2


class RunningHashes:
    """Whole-file SHA-256 state for uploads whose bytes this process received in order.

    A cache, not state: when an entry is missing the digest is computed later instead.
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


class DigestPasses:
    """Schedules `compute(upload_id)` at most once at a time per upload, in a bounded pool."""

    def __init__(self, compute: Callable[[str], None], workers: int = DIGEST_WORKERS):
        self._compute = compute
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tus-digest")
        self._pending: set[str] = set()
        self._guard = threading.Lock()

    def schedule(self, upload_id: str) -> None:
        with self._guard:
            if upload_id in self._pending:
                return
            self._pending.add(upload_id)
        try:
            self._pool.submit(self._run, upload_id)
        except RuntimeError:  # the interpreter is shutting down; the next GET schedules it
            with self._guard:
                self._pending.discard(upload_id)

    def _run(self, upload_id: str) -> None:
        try:
            self._compute(upload_id)
        except UploadNotFound:
            log.info("digest pass stopped: upload_id=%s was terminated", upload_id)
        except WriteFenced:
            log.info("digest pass yielded to a newer write upload_id=%s", upload_id)
        except Exception:  # logged; the next GET schedules it again
            log.exception("digest pass failed upload_id=%s", upload_id)
        finally:
            with self._guard:
                self._pending.discard(upload_id)
