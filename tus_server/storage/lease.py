"""The upload lock: a sequence of write-once generations under `.tus/lock/`.

    .tus/lock/<inverted n>     (empty; x-amz-meta-tus-lock: <state>.<holder>.<instance>.<expires>)

`n` counts up from 1 and is stored as 10**12 - n, so S3's name order lists the newest first;
`state` is `held` (taken by `holder`, a random id per request), `release` (another request
asks that holder to hand over) or `released`; `instance` is the holder's process heartbeat id
(`storage/instances.py`, `-` when it has none) and `expires` a unix time, used only by a lock
that names no instance. A look at the lock is one LIST of a couple of names with their user
metadata (MinIO lists it; on a server that does not, one HEAD of the newest): the newest
generation is the lock's state, and no object is read.

The key is the number alone, so that two requests writing the same number write the same key
and `If-None-Match: *` lets only one of them in. (Generations once named by their state, holder
included: two takes of one number were then two keys, both answered 200, and two PATCHes held
the upload at once.)

Why write-once: a key whose write a dead MinIO node was coordinating stays locked inside a
distributed MinIO for one to two minutes; a lock object rewritten in place (take, renew, mark,
delete) would stall every later request on that upload as long. Here every change is a PUT
`If-None-Match: *` of the number after the newest listed, with a short timeout: a 412 means
somebody else wrote that number (look again), and a PUT that failed or hung is abandoned and
its number skipped (the next try uses a higher one, never the same key), so this process
never writes a stuck key twice (another process that races for that number waits out its own
short timeout once, then skips it too). A PUT whose fate is unknown may still land later; its holder id is then
retired, and a background chore (`storage/chores.py`) writes `released` over it if it shows.

Validity: a `held` generation that names an instance is valid while that instance's heartbeat
is fresh, with no renewal write: a PATCH costs one PUT to take and one to release, whatever
it lasts, and a PATCH that leaves its upload unfinished keeps the lock a moment for the next
one (`kept_locks.py`), which then costs neither. A generation without an instance
(heartbeats off or unwritable) is a lease of `TUS_LOCK_LEASE` seconds, renewed by a new
`held` generation every third of it. Two backstops free a lock whose holder left without a
`released` generation (its PUT lost): in the holder's own process, a holder that is no longer
held here; elsewhere, a `release` request that stayed the newest generation for `UNANSWERED`
seconds. The lock gives fairness and hand-over, not safety: a holder may stall at any
moment, and only the fenced writes in `writer.py` keep a stale holder from changing what a
later one stored.

Hand-over (as tusd does it): a request that finds the lock held by a live holder tells it
directly when the holder is in this process, or else writes a `release` generation naming
it. The holder's keeper sees a newer generation at its next poll (about once a second; every
few seconds when the process holds thousands of locks, `KEEPER_READS_PER_SECOND`; one LIST
each), stops the body read, stores what arrived and writes `released`; the waiting request
then takes the next number. A holder that does not answer within `TUS_HANDOVER_WAIT` seconds
leaves the waiter with 423. A holder whose instance's heartbeat is `TUS_HEARTBEAT_TIMEOUT` old
by MinIO's clock (a few seconds) is dead: the waiter takes the next number at once; of several
waiters only one gets it. Release is a new generation, never a DELETE of the lock; the
generations it superseded are deleted right after it, before the request answers (given up
after a second, then left to a chore), and termination deletes them all with the upload.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import Callable, Optional

from . import chores, pokes
from .instances import Instances
from .layout import LOCK_PREFIX
from .lock_generations import (  # noqa: F401  (re-exported: the lock's readers import them here)
    META,
    PRUNE_LIST,
    TOP,
    Generation,
    current,
    generation_number,
    look,
    parse_generation,
    prune,
    write_generation,
)
from .objects import Objects
from .store import StorageUnavailable, StoreError, UploadLocked, UploadNotFound

log = logging.getLogger("tus_server.store")

# Seconds between a waiting request's looks at the lock.
WAIT_STEP = 0.05
# LISTs of their locks per second that the keepers of one process take together at most:
# with thousands of slow uploads open (the gevent worker), each keeper looks less often than
# once a second instead of flooding MinIO.
KEEPER_READS_PER_SECOND = 100.0
# Failed MinIO requests a request's wait for the lock survives before it answers 503.
RETRIES = 2

# Locks held by this process, by holder id: a request here hands over in memory.
_held: dict[str, "Lease"] = {}
_held_guard = threading.Lock()
# Holders of this process that hold nothing any more although a generation may still name
# them (a release or a take that failed): waiters here take over at once, and a chore writes
# `released` above them.
_orphaned: set[str] = set()
# Hand-over requests seen here, by name: when first seen (see `nobody_writing`).
_unanswered: dict[str, float] = {}
# Seconds a live instance may leave a hand-over request unanswered (its keeper looks every few
# seconds at most, `KEEPER_READS_PER_SECOND`) before its lock counts as free.
UNANSWERED = 20.0


def nobody_writing(generation: Generation, instances: Optional[Instances]) -> bool:
    """Is nobody holding the upload: released, a lease over, a holder this process retired or
    no longer has, a holder whose instance's heartbeat went silent, or a hand-over request
    left unanswered for `UNANSWERED` seconds (a backstop: fencing keeps such a holder, were
    it still writing, from changing anything)?"""
    if generation.state == "released" or generation.holder in _orphaned:
        return True
    if generation.instance is None:
        return generation.expires < time.time()
    if instances is None:
        return False
    if generation.instance == instances.own_id():
        with _held_guard:
            return generation.holder not in _held
    if generation.state == "release":
        seen = _unanswered.setdefault(generation.label() + generation.name(),
                                      time.monotonic())
        if len(_unanswered) > 10000:
            _unanswered.clear()
        if time.monotonic() - seen > UNANSWERED:
            return True
    return instances.is_dead(generation.instance)


class Lease:
    """One request's hold on one upload. `on_stop(reason)` is called from the keeper thread
    when the holder must stop: "handover" (asked to let go) or "lost" (the lock is not ours)."""

    def __init__(self, objects: Objects, upload_id: str, lease_seconds: float,
                 instances: Optional[Instances] = None):
        self.objects = objects
        self.instances = instances
        self.instance: Optional[str] = None
        self.upload_id = upload_id
        self.lease_seconds = lease_seconds
        self.holder = uuid.uuid4().hex
        self.generation: Optional[Generation] = None
        self.stop_reason: Optional[str] = None
        # time.monotonic() when a look last found the lock ours (taken, or the keeper's poll)
        self.confirmed: Optional[float] = None
        self.on_stop: Optional[Callable[[str], None]] = None
        # Set by a request that wants the lock kept after it, with the state it committed
        # (kept_locks.py); None: released at the end of the request.
        self.keep_with = None
        # After `release`: was a hand-over request the newest generation (somebody asked)?
        self.asked_for = False
        # Taken from a holder of another process that died or went silent in a request (not
        # one that released): the state generation after the newest listed may be the one it
        # was writing.
        self.took_over_writer = False
        self._guard = threading.Lock()
        self._done = threading.Event()
        self._look_now = threading.Event()  # set to end the keeper's wait: done, or a poke
        self._keeper: Optional[threading.Thread] = None

    # ----------------------------------------------------------------- taking the lock
    def _write(self, newest: Optional[Generation], state: str) -> Optional[Generation]:
        """Write a generation of ours; an unknown outcome retires our holder id."""
        expires = 0.0 if self.instance else time.time() + self.lease_seconds
        try:
            return write_generation(self.objects, self.upload_id, newest, state, self.holder,
                                    self.instance, expires)
        except StorageUnavailable:
            retire(self.objects, self.upload_id, self.holder)
            self.holder = uuid.uuid4().hex
            raise

    def acquire(self, wait: float) -> "Lease":
        """Take the lock, asking a live holder to hand over; UploadLocked after `wait` s, or
        StorageUnavailable when MinIO did not answer until then."""
        deadline = time.monotonic() + wait
        if self.instances is not None:
            self.instance = self.instances.own_id()
        asked, failures = None, 0
        while True:
            looked = time.monotonic()
            try:
                newest = current(self.objects, self.upload_id)
                if newest is not None and newest.holder == self.holder \
                        and newest.state == "held":
                    # Our own PUT, stored by a node that died before it answered and found
                    # by its second try (412): the holder token is this lease's alone.
                    self.generation, self.confirmed = newest, looked
                    break
                if newest is None or nobody_writing(newest, self.instances):
                    self.generation = self._write(newest, "held")
                    if self.generation is not None:
                        self.confirmed = looked
                        if newest is not None and newest.state != "released":
                            log.warning("took over stale lock upload_id=%s instance=%s",
                                        self.upload_id, newest.instance)
                            # (Not a holder of this process: it let go, or was retired.)
                            self.took_over_writer = newest.instance != self.instance
                        break
                    continue  # somebody wrote that number first: look again at once
                if newest.state == "held" and asked != newest:
                    ask_to_release(self.objects, self.upload_id, newest)
                    asked = newest
            except StorageUnavailable:
                # A stuck key costs a retry on the next number; MinIO away is a 503 soon.
                failures += 1
                if failures > RETRIES or time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise UploadLocked(f"upload {self.upload_id} is busy with another request")
            time.sleep(WAIT_STEP)
        with _held_guard:
            _held[self.holder] = self
        self._keeper = threading.Thread(target=self._keep, daemon=True,
                                        name=f"lease-{self.upload_id}")
        self._keeper.start()
        return self

    # ----------------------------------------------------------------- holding it
    def request_release(self) -> None:
        """Another request in this process wants the upload (in-memory hand-over)."""
        self._stop("handover")

    def _stop(self, reason: str) -> None:
        with self._guard:
            if self.stop_reason is not None and reason != "lost":
                return
            self.stop_reason = reason
            callback = self.on_stop
        log.info("lease %s upload_id=%s", reason, self.upload_id)
        if callback is not None:
            callback(reason)

    @property
    def lost(self) -> bool:
        return self.stop_reason == "lost"

    def still_ours(self) -> bool:
        """A fresh look (one LIST): is the lock's newest generation still this lease's?"""
        if self.lost or self.generation is None:
            return False
        try:
            return current(self.objects, self.upload_id) == self.generation
        except StoreError:
            return False

    def unchallenged(self, now: Optional[float] = None) -> Optional[bool]:
        """Can nobody have taken this lock over since it was taken? A lock that names this
        process's instance can be taken over only once its heartbeat is `TUS_HEARTBEAT_TIMEOUT`
        old, or once a hand-over request stayed unanswered for `UNANSWERED` (the keeper answers
        those, and it last found the lock ours at `confirmed`). None for a lock without an
        instance: its lease says. `now`: time.monotonic(), unless given."""
        if not self.instance or self.instances is None:
            return None
        now = time.monotonic() if now is None else now
        fresh_until = self.instances.own_beat_fresh_until(self.instance)
        return (not self.lost and fresh_until is not None and now < fresh_until
                and self.confirmed is not None and now - self.confirmed < UNANSWERED / 2)

    def _keep(self) -> None:
        """Poll for a newer generation (a hand-over request, or a takeover); renew only a
        lock without an instance."""
        while True:
            self._look_now.wait(self._poll_interval() * random.uniform(0.75, 1.25))
            self._look_now.clear()
            if self._done.is_set() or self.lost:
                return
            mine, looked = self.generation, time.monotonic()
            try:
                newest = current(self.objects, self.upload_id)
                if newest == mine:
                    self.confirmed = looked
                    if not self.instance and \
                            mine.expires - time.time() < self.lease_seconds * 2 / 3:
                        # A renewal whose fate is unknown needs no retiring: it is ours too.
                        self.generation = write_generation(
                            self.objects, self.upload_id, newest, "held", self.holder, None,
                            time.time() + self.lease_seconds) or mine
                    continue
                if newest is not None and newest.holder == self.holder \
                        and newest.state == "release":
                    self._stop("handover")
                elif newest is None or newest.number > mine.number:
                    self._stop("lost")
            except StoreError:
                # MinIO unreachable: writes fail on their own; once a lease without an
                # instance is over, somebody may take the upload, so stop here too.
                if not self.instance and time.time() > mine.expires:
                    self._stop("lost")

    def _poll_interval(self) -> float:
        """About a second; longer once this process holds more locks than its keepers may
        look at each second (never past a third of a lease that needs renewing)."""
        with _held_guard:
            held = len(_held)
        base = min(1.0, self.lease_seconds / 4)
        interval = max(base, held / KEEPER_READS_PER_SECOND)
        return interval if self.instance else min(interval, self.lease_seconds / 3)

    def release(self, keep_object: bool = False) -> None:
        """Let go: one `released` generation (none with `keep_object`: the upload is gone).
        When MinIO does not take it, the holder is retired and a chore retries."""
        self._done.set()
        self._look_now.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        with _held_guard:
            _held.pop(self.holder, None)
        if keep_object or self.generation is None or self.lost:
            return
        seen: list = []
        try:
            if not release_holder(self.objects, self.upload_id, self.holder,
                                  mine=self.generation, seen=seen):
                retire(self.objects, self.upload_id, self.holder)
        except UploadNotFound:
            pass
        except StoreError:
            retire(self.objects, self.upload_id, self.holder)
            log.warning("could not release lock upload_id=%s", self.upload_id)
        finally:
            self.asked_for = "release" in seen


def release_holder(objects: Objects, upload_id: str, holder: str, tries: int = 3,
                   mine: Optional[Generation] = None,
                   seen: Optional[list] = None) -> bool:
    """Write `released` above the newest generation if that one names `holder`; True when
    the lock does not name it any more. `mine`: the holder's own generation, newer than
    whatever a LIST that lags behind it shows.

    The generations it superseded are deleted before it returns (one request, given up after
    a second; then a background chore retries): a request answered after a release leaves
    the lock as one `released` generation, and a later request that takes no lock (a 409, a
    HEAD) finds the upload's objects as they were. `seen` gets the state of each generation
    naming `holder` that was found newest ("release": somebody had asked for the upload)."""
    bucket, prefix = objects.location(upload_id)
    for _ in range(tries):
        newest, listed = look(objects, upload_id, PRUNE_LIST)
        if mine is not None and (newest is None or newest.number < mine.number):
            newest = mine
            listed.append((prefix + LOCK_PREFIX + mine.name(), mine.number))
        if newest is None or newest.holder != holder or newest.state == "released":
            return True
        if seen is not None:
            seen.append(newest.state)
        written = write_generation(objects, upload_id, newest, "released", holder,
                                   newest.instance)
        if written is not None:
            stale = sorted({key for key, number in listed if number < written.number})
            if len(listed) >= PRUNE_LIST or \
                    not objects.remove_keys_quickly(bucket, stale, upload_id):
                chores.submit(lambda: prune(objects, upload_id, written.number), attempts=5)
            return True
    return False


def retire(objects: Objects, upload_id: str, holder: str) -> None:
    """`holder` holds nothing any more: waiters here may take over at once, and a chore makes
    sure no generation that names it stays the newest (for other processes)."""
    _orphaned.add(holder)

    def chore() -> bool:
        try:
            return release_holder(objects, upload_id, holder, tries=1)
        except UploadNotFound:
            return True

    chores.submit(chore, attempts=60)


def ask_to_release(objects: Objects, upload_id: str, held: Generation) -> None:
    """Ask the live holder of `held` to hand over (in memory when it is ours)."""
    with _held_guard:
        local = _held.get(held.holder)
    if local is not None:
        local.request_release()
        return
    # A 412 (a newer generation meanwhile) needs nothing: the waiter looks again anyway.
    if write_generation(objects, upload_id, held, "release", held.holder, held.instance,
                        held.expires, skip=False) is not None:
        pokes.send(held.instance, upload_id)  # on this machine: its keeper looks at once


def _poked(upload_id: str) -> None:
    """Another process asked for `upload_id`: the keepers of its leases here look now."""
    with _held_guard:
        leases = [lease for lease in _held.values() if lease.upload_id == upload_id]
    for lease in leases:
        lease._look_now.set()


pokes.handler = _poked


def answer_late_requests(objects: Objects, upload_id: str) -> None:
    """After a deletion removed the lock's generations: a hand-over request that another
    process wrote while the deletion listed them would make the removed upload look busy
    (423, for `UNANSWERED` seconds); a `released` above it answers it. Nothing is written
    when nothing came late (the usual case: the deletion leaves no lock object)."""
    try:
        newest = current(objects, upload_id)
        if newest is not None and newest.state != "released":
            write_generation(objects, upload_id, newest, "released", newest.holder,
                             newest.instance, skip=False)
    except StoreError as exc:  # a request that waits on it answers 404 after its wait
        log.info("late lock request after deletion not answered upload_id=%s: %s",
                 upload_id, exc)


def settle(objects: Objects, upload_id: str, wait: float,
           instances: Optional[Instances] = None) -> None:
    """Wait until nobody holds the upload, asking a live holder to hand over first.

    A HEAD uses this so it reports what a running PATCH stored, not an offset from before it.
    """
    deadline = time.monotonic() + wait
    asked, failures = False, 0
    while True:
        try:
            newest = current(objects, upload_id)
            if newest is None or nobody_writing(newest, instances):
                return
            if newest.state == "held" and not asked:
                ask_to_release(objects, upload_id, newest)
                asked = True
        except StorageUnavailable:
            failures += 1
            if failures > RETRIES or time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            raise UploadLocked(f"upload {upload_id} is busy with another request")
        time.sleep(WAIT_STEP)
