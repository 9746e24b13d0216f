"""Locks kept for the next PATCH of the same upload, with the state that PATCH left.

A client uploads in PATCHes one after another (5 MiB each from a browser), each sent the
moment the previous one was answered. Taking and releasing the lock for each costs four MinIO
requests (a LIST and a PUT to take it, a LIST and a PUT to release it, and a DELETE of the
generations the release superseded), and reading the state one more: more than the chunk PUT
and the state PUT that are the PATCH's own work. So a PATCH that leaves its upload unfinished
keeps its lock for `TUS_LOCK_KEEP` seconds, with the state it committed: the next PATCH
through this process starts at once from that state, and costs MinIO only its chunk and its
state. A HEAD here answers from the kept state too (nothing is running: the lock is ours).

Nothing about safety changes. The kept lock's keeper goes on looking at the lock about once a
second (`lease.py`); another process that wants the upload asks it to hand over, as it would
ask a running PATCH, and the lock is released at once. A takeover (this instance judged
dead) shows as a newer generation, and the kept lock and its state are dropped; a PATCH that
started from the state in between is fenced by its conditional writes (`writer.py`), as any
stale writer is. An upload that another process asked for is not kept again here for
`CONTESTED_SECONDS`: behind a balancer that spreads one client's PATCHes over instances,
keeping would make each of them wait for a hand-over.
"""
from __future__ import annotations

import atexit
import copy
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Optional

from .lease import Lease
from .store import StoreError, UploadInfo

log = logging.getLogger("tus_server.store")

# Seconds an upload that another process asked for is not kept again by this one.
CONTESTED_SECONDS = 300.0
# Kept locks at most, per store: past that, a PATCH releases its lock as before.
MOST_KEPT = 10000


@dataclass
class _Kept:
    lease: Lease
    info: UploadInfo
    until: float  # time.monotonic() when it is released


class KeptLocks:
    def __init__(self, keep_seconds: float):
        self.keep_seconds = keep_seconds
        self._kept: dict[str, _Kept] = {}
        self._contested: dict[str, float] = {}  # upload id -> when it was asked for
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        _all.add(self)

    # ----------------------------------------------------------------- requests
    def take(self, upload_id: str) -> Optional[Lease]:
        """The kept lock of `upload_id`, now the caller's to use and release; None when none
        is kept here (or it was asked for or lost meanwhile: it is released then)."""
        with self._guard:
            kept = self._kept.pop(upload_id, None)
        if kept is None:
            return None
        kept.lease.on_stop = None
        if kept.lease.stop_reason:  # asked for while its callback ran: let it go now
            self._release(kept.lease)
            return None
        return kept.lease

    def info(self, upload_id: str) -> Optional[UploadInfo]:
        """The state the last PATCH here committed, while its lock is kept (and still ours)."""
        with self._guard:
            kept = self._kept.get(upload_id)
        if kept is None or kept.lease.stop_reason:
            return None
        return copy.deepcopy(kept.info)

    def keep(self, lease: Lease, info: UploadInfo) -> bool:
        """Keep `lease` with the state `info` its PATCH committed; False when it is not kept
        (off, asked for or lost, contested, too many kept): the caller releases it."""
        upload_id = lease.upload_id
        if not self.keep_seconds or lease.stop_reason or lease.generation is None \
                or info.completed or info.version is None:
            return False
        with self._guard:
            asked = self._contested.get(upload_id)
            if asked is not None and time.monotonic() - asked < CONTESTED_SECONDS:
                return False
            if len(self._kept) >= MOST_KEPT or upload_id in self._kept:
                return False
            kept = _Kept(lease, copy.deepcopy(info), time.monotonic() + self.keep_seconds)
            self._kept[upload_id] = kept
        lease.on_stop = lambda reason: self._stopped(upload_id, kept, reason)
        if lease.stop_reason:  # asked for before the callback was in place
            self._stopped(upload_id, kept, lease.stop_reason)
        self._start()
        return True

    def _stopped(self, upload_id: str, kept: _Kept, reason: str) -> None:
        """From the lease's keeper: another request wants the upload (or the lock is lost).
        The release itself runs in the releasing thread (the keeper cannot join itself)."""
        with self._guard:
            if self._kept.get(upload_id) is not kept:
                return  # a request took it meanwhile: `take` saw the reason
            kept.until = 0.0
        if reason == "handover":
            self._contest(upload_id)
        self._wake.set()

    def _contest(self, upload_id: str) -> None:
        """Another process asked for `upload_id`: not kept here for a while."""
        with self._guard:
            now = time.monotonic()
            self._contested[upload_id] = now
            if len(self._contested) > MOST_KEPT:
                self._contested = {k: v for k, v in self._contested.items()
                                   if now - v < CONTESTED_SECONDS}

    # ----------------------------------------------------------------- releasing
    def _start(self) -> None:
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                self._wake.set()
                return
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="tus-kept-locks")
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._guard:
                now = time.monotonic()
                due = [k for k, v in self._kept.items() if v.until <= now]
                leases = [self._kept.pop(k).lease for k in due]
                soonest = min((v.until for v in self._kept.values()), default=None)
                if soonest is None and not leases:  # nothing kept: the next keep starts one
                    self._thread = None
                    return
            for lease in leases:
                self._release(lease)
                if lease.asked_for:  # asked before the keeper looked: contested all the same
                    self._contest(lease.upload_id)
            if soonest is not None:
                self._wake.wait(max(0.0, soonest - time.monotonic()))
                self._wake.clear()

    @staticmethod
    def _release(lease: Lease) -> None:
        lease.on_stop = None
        try:
            lease.release()
        except StoreError as exc:  # release retires the holder itself; only log
            log.info("kept lock not released upload_id=%s: %s", lease.upload_id, exc)

    def release_all(self) -> int:
        """Let go of every kept lock now (a graceful stop); how many there were."""
        with self._guard:
            leases = [kept.lease for kept in self._kept.values()]
            self._kept.clear()
        for lease in leases:
            self._release(lease)
        return len(leases)


_all: "weakref.WeakSet[KeptLocks]" = weakref.WeakSet()


def release_all() -> int:
    """Every store's kept locks, released (the shutdown path, before the heartbeat stops)."""
    return sum(kept.release_all() for kept in list(_all))


# Registered after instances.py's `stop_all` (imported first), so it runs before it at exit.
atexit.register(release_all)
