"""The lock object `.tus/lock`: who holds an upload, until when, and whether to let go.

    {"holder": "<random hex>", "expires": <unix time>, "release": false,
     "instance": "<the holder's instance id, storage/instances.py>"}

A request takes the lock with `If-None-Match: *` and a keeper thread renews it with `If-Match`
every third of `TUS_LOCK_LEASE`, independent of the body read. The lease gives fairness and
hand-over, not safety: a holder may stall past its lease at any moment, and only the fenced
writes in `writer.py` keep a stale holder from changing what a later one stored.

Hand-over (as tusd does it): a request that finds the lock held by a live holder sets
`"release": true` in it (a conditional PUT), or, when the holder is in this process, tells it
directly. The holder's keeper sees the mark at its next poll (about once a second; every few
seconds when the process holds thousands of leases, `KEEPER_READS_PER_SECOND`), stops the body
read, stores what arrived, and deletes the lock; the waiting request then takes it.
A holder that does not answer within `TUS_HANDOVER_WAIT` seconds leaves the waiter with 423.
A holder that died is taken over as soon as its instance's heartbeat is `TUS_HEARTBEAT_TIMEOUT`
old by MinIO's clock (a few seconds), or else once its lease ran out; either way `If-Match` on
the lock's ETag, so of several waiters only one takes it.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from typing import Callable, NamedTuple, Optional

from .instances import Instances
from .layout import LOCK_NAME
from .objects import Objects
from .store import StoreError, UploadLocked

log = logging.getLogger("tus_server.store")

# Seconds of lease left under which a release first checks that the lock is still ours
# (hosts sharing a MinIO need clocks in sync to well within this).
RELEASE_MARGIN = 2.0
# Seconds between a waiting request's looks at the lock object.
WAIT_STEP = 0.05
# Looks at their lock objects per second that the keepers of one process take together at
# most: with thousands of slow uploads open (the gevent worker), each keeper looks less often
# than once a second instead of flooding MinIO (renewals, every third of the lease, still
# notice a changed lock too).
KEEPER_READS_PER_SECOND = 100.0

# Leases held by this process, by holder id: a request here hands over in memory.
_held: dict[str, "Lease"] = {}
_held_guard = threading.Lock()
# Holders of this process whose release failed (MinIO was down): their lock objects may be
# taken over at once, since this process knows they are not writing any more.
_orphaned: set[str] = set()


class LockState(NamedTuple):
    holder: Optional[str]
    expires: float
    release: bool  # a hand-over was asked for
    instance: Optional[str]  # the holder's process (None: written without a heartbeat)


def parse_lock(body: Optional[bytes]) -> LockState:
    """What a lock object says; an unreadable one is expired."""
    try:
        data = json.loads(body or b"")
        return LockState(data.get("holder"), float(data.get("expires", 0)),
                         bool(data.get("release")), data.get("instance"))
    except (ValueError, AttributeError, TypeError):
        return LockState(None, 0.0, False, None)


def nobody_writing(state: LockState, instances: Optional[Instances]) -> bool:
    """Is the holder of this lock gone: its lease over, its release failed in this process,
    or its instance's heartbeat silent?"""
    return (state.expires < time.time() or state.holder in _orphaned
            or (instances is not None and instances.is_dead(state.instance)))


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
        self.etag: Optional[str] = None
        self.expires_at = 0.0
        self.stop_reason: Optional[str] = None
        self.on_stop: Optional[Callable[[str], None]] = None
        self._release_mark = False
        self._guard = threading.Lock()
        self._done = threading.Event()
        self._keeper: Optional[threading.Thread] = None

    # ----------------------------------------------------------------- taking the lock
    def _put_lock(self, **precondition) -> Optional[str]:
        """Write our lock object; the expiry counts only once MinIO took it (a failed renewal
        must not make the lease look longer than it is)."""
        expires = time.time() + self.lease_seconds
        body = json.dumps({"holder": self.holder, "expires": expires,
                           "release": self._release_mark, "instance": self.instance}).encode()
        etag = self.objects.conditional_put(self.upload_id, LOCK_NAME, body, **precondition)
        if etag:
            self.expires_at = expires
        return etag

    def acquire(self, wait: float) -> "Lease":
        """Take the lock, asking a live holder to hand over; UploadLocked after `wait` s."""
        deadline = time.monotonic() + wait
        if self.instances is not None:
            self.instance = self.instances.own_id()
        while True:
            self.etag = self._put_lock(if_none_match=True)
            if self.etag:
                break
            if self._take_over_if_dead():
                break
            if time.monotonic() >= deadline:
                raise UploadLocked(f"upload {self.upload_id} is busy with another request")
            time.sleep(WAIT_STEP)
        with _held_guard:
            _held[self.holder] = self
        self._keeper = threading.Thread(target=self._keep, daemon=True,
                                        name=f"lease-{self.upload_id}")
        self._keeper.start()
        return self

    def _take_over_if_dead(self) -> bool:
        current, etag = self.objects.read_object(self.upload_id, LOCK_NAME)
        if current is None:
            return False  # released meanwhile: the next create takes it
        state = parse_lock(current)
        if nobody_writing(state, self.instances):
            # The holder died, stalled past its lease, or was ours and could not be released:
            # take over, unless somebody else did first (If-Match).
            self.etag = self._put_lock(if_match=etag)
            if self.etag:
                _orphaned.discard(state.holder)
                log.warning("took over stale lock upload_id=%s instance=%s", self.upload_id,
                            state.instance)
                return True
            return False
        if not state.release:
            ask_to_release(self.objects, self.upload_id, current, etag)
        return False

    # ----------------------------------------------------------------- holding it
    def request_release(self) -> None:
        """Another request in this process wants the upload (in-memory hand-over)."""
        self._release_mark = True
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

    def _keep(self) -> None:
        """Renew every third of the lease; between renewals, poll for a hand-over request."""
        renew_every = self.lease_seconds / 3
        last_renewal = time.monotonic()
        # Pauses vary by a quarter either way: keepers of leases taken together drift apart
        # instead of all looking in the same instant.
        while not self._done.wait(self._poll_interval() * random.uniform(0.75, 1.25)) \
                and not self.lost:
            try:
                if time.monotonic() - last_renewal >= renew_every:
                    etag = self._put_lock(if_match=self.etag)
                    if etag:
                        self.etag, last_renewal = etag, time.monotonic()
                        continue
                current, etag = self.objects.read_object(self.upload_id, LOCK_NAME)
                if etag == self.etag:
                    continue
                state = parse_lock(current)
                if state.holder == self.holder and state.release:
                    self.etag, self._release_mark, self.expires_at = etag, True, state.expires
                    self._stop("handover")
                else:
                    self._stop("lost")
            except StoreError:
                # MinIO unreachable: writes fail on their own; once the lease is over,
                # somebody may take the upload, so stop here too.
                if time.time() > self.expires_at:
                    self._stop("lost")

    def _poll_interval(self) -> float:
        """About a second; longer once this process holds more leases than its keepers may
        look at each second (never past a renewal)."""
        with _held_guard:
            held = len(_held)
        base = min(1.0, self.lease_seconds / 4)
        return min(max(base, held / KEEPER_READS_PER_SECOND), self.lease_seconds / 3)

    def release(self, keep_object: bool = False) -> None:
        self._done.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        with _held_guard:
            _held.pop(self.holder, None)
        if keep_object or not self.etag or self.lost:
            return
        try:
            if self.expires_at - time.time() > RELEASE_MARGIN:
                # Our lease is still running, so nobody can have taken the lock over.
                self.objects.remove_object(self.upload_id, LOCK_NAME)
                return
            current, _ = self.objects.read_object(self.upload_id, LOCK_NAME)
            if current is not None and parse_lock(current).holder == self.holder:
                self.objects.remove_object(self.upload_id, LOCK_NAME)
        except Exception:  # the lease expires on its own; this process may take it over sooner
            _orphaned.add(self.holder)
            log.warning("could not release lock upload_id=%s", self.upload_id)


def ask_to_release(objects: Objects, upload_id: str, current: bytes,
                   etag: Optional[str]) -> None:
    """Ask the live holder of the lock `current` to hand over (in memory when it is ours)."""
    with _held_guard:
        local = _held.get(parse_lock(current).holder or "")
    if local is not None:
        local.request_release()
        return
    mark = json.dumps(dict(json.loads(current), release=True)).encode()
    # If-Match: never overwrite a renewal or a newer holder; the waiter looks again anyway.
    objects.conditional_put(upload_id, LOCK_NAME, mark, if_match=etag)


def settle(objects: Objects, upload_id: str, wait: float,
           instances: Optional[Instances] = None) -> None:
    """Wait until nobody holds the upload, asking a live holder to hand over first.

    A HEAD uses this so it reports what a running PATCH stored, not an offset from before it.
    """
    deadline = time.monotonic() + wait
    asked = False
    while True:
        current, etag = objects.read_object(upload_id, LOCK_NAME)
        if current is None:
            return
        state = parse_lock(current)
        if nobody_writing(state, instances):
            return
        if not state.release and not asked:
            ask_to_release(objects, upload_id, current, etag)
            asked = True
        if time.monotonic() >= deadline:
            raise UploadLocked(f"upload {upload_id} is busy with another request")
        time.sleep(WAIT_STEP)
