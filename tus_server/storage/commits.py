"""The generations one writer commits, and what it cleans up once they stand.

A writer's commits target a number above every generation it has seen (`generations.py`).
It remembers the pieces its commits referenced, so that after a failure it deletes only pieces
no generation of its lists (a generation it did commit may be a later writer's start), and the
keys its commits dropped, deleted in one request after the request (a background chore),
together with the batch of old generations that is due.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from .generations import Generations
from .layout import generation_key
from .objects import Objects
from .parts import finished_garbage
from .store import UploadInfo, UploadTakenOver

# Piece keys a generation collects as garbage before one commit drops them all, to be deleted
# in one request after it.
GARBAGE_BATCH = 8


class Commits:
    def __init__(self, objects: Objects, generations: Generations, info: UploadInfo,
                 token: str, lease_seconds: float, started: Optional[float] = None,
                 still_ours: Optional[Callable[[], bool]] = None,
                 unchallenged: Optional[Callable[[], Optional[bool]]] = None,
                 skip_first: bool = False):
        self.objects = objects
        self.generations = generations
        self.token = token
        self.lease_seconds = lease_seconds
        self.still_ours = still_ours  # a fresh look at the writer's lock (Generations.commit)
        self.unchallenged = unchallenged  # can nobody have taken it over? (Lease.unchallenged)
        # When the lock was last seen ours: the request's start, or the last look of a kept
        # lock's keeper (kept_locks.py), whichever is earlier.
        now = time.monotonic()
        self.started = now if started is None else min(now, started)
        self.base = info.version or 0  # the generation the writer started from
        self.seen = max(info.seen, self.base)  # the highest generation number it has seen
        self.last: Optional[int] = None  # the newest generation it committed
        # The lock was taken from a writer that died mid-request: its last commit may be in
        # flight under the number after the newest listed, a key the MinIO node coordinating
        # it may have left locked for minutes when it died with it (each PUT of that key
        # waits out `QUICK` before `Generations.commit` skips it). So the first commit
        # leaves that number out, as such a skip would, without the wait (one LIST).
        self.skip_first = skip_first
        self.written: list[int] = []  # every generation it committed
        self.mine: list[str] = []  # pieces the writer put
        self.referenced: set[str] = set()  # ... and listed in a generation it committed
        self.to_delete: list[str] = []  # dropped by a committed generation

    def commit(self, info: UploadInfo) -> None:
        """Store `info` as the writer's next generation (the caller serializes commits)."""
        info.writer = self.token
        release = []
        if info.completed or len(info.garbage) >= GARBAGE_BATCH:
            release = info.garbage + ([p[2] for p in info.pieces] if info.completed else [])
            info.garbage = []
            if info.completed:
                info.pieces = []
        after = max(self.seen, self.last or 0)
        if self.skip_first and self.last is None and self.generations.newest(info.id) <= after:
            # Only while that number is not listed: one that is (the state this writer read
            # is older) must meet its 412, which stops this writer (`WriteFenced`). One that
            # lands after this look is a writer's that lost the lock, below ours and caught
            # by its own end-of-request check, as after a skip in `Generations.commit`.
            after += 1
        self.last = self.seen = self.generations.commit(info, after, self.still_ours)
        self.written.append(self.last)
        self.referenced.update(p[2] for p in info.pieces + info.stand_ins)
        self.to_delete += release

    def end_request(self, info: UploadInfo) -> None:
        """After the last commit: make sure it is the newest generation (a writer that stalled
        past its lease may have committed into a pruned number), then have what the commits
        dropped and the old generations deleted, in one request in the background.

        The check is one LIST, skipped when nobody can have taken the lock over, so nobody
        can have pruned: a lock that names this process's instance while its heartbeat is
        fresh (`Lease.unchallenged`), one without an instance while the request took less than
        half its lease (with clocks in sync, as lease.py assumes). Either way the bytes are
        safe; this only keeps a stalled writer from answering 204 with an offset that is not
        the upload's.
        """
        if self.last is None:
            return
        unchallenged = self.unchallenged() if self.unchallenged is not None else None
        stalled = not unchallenged if unchallenged is not None else \
            time.monotonic() - self.started > self.lease_seconds / 2
        newest = self.generations.newest(info.id) if stalled else self.last
        if newest != self.last:
            # Ours lie below a later writer's and are never read (those below its predecessor,
            # which a read may fall back to): delete them.
            self.objects.remove_names_later(info.id, [generation_key(n) for n in self.written
                                                      if n < newest - 1])
            raise UploadTakenOver(f"another request took over upload {info.id}")
        names = self.to_delete + self.generations.prune_names(self.base, self.last)
        if info.completed:
            names += finished_garbage(self.objects, info)
        self.objects.remove_names_later(info.id, sorted(set(names)))

    def drop_uncommitted(self, upload_id: str) -> None:
        """After a failure: the writer's pieces that no generation of its lists are garbage
        (best effort)."""
        names = [name for name in self.mine if name not in self.referenced]
        if names:
            self.objects.remove_names_later(upload_id, names)
