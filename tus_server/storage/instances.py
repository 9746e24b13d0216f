"""Instance heartbeats: which server processes are alive, judged by MinIO's clock.

Each server process that takes upload locks writes a new small object every
`TUS_HEARTBEAT_INTERVAL` seconds, from a daemon thread, in the system bucket:

    $TUS_SYSTEM_BUCKET/instances/<instance id>/<10**12 - seq>   {"instance", "host", "pid", ...}

one PUT per process per interval, however many uploads it holds. Every beat is a new key
(`seq` counts up, so the newest lists first) and is given up after a few seconds: a key whose
write a dead MinIO node was coordinating stays locked inside a distributed MinIO for a minute
or two, and a heartbeat rewritten in place would block that long and make a live instance look
dead. A beat that fails or hangs is abandoned, and the next one uses the next key. Beats it
superseded are deleted in the background (`storage/chores.py`), best effort.

A lock names its holder's instance (`storage/lease.py`). A request that finds an upload locked
asks how old that instance's newest beat is, in MinIO's own clock: a LIST of
`instances/<id>/` (the newest name, with its LastModified in milliseconds), then the time of
a fresh HEAD answer, both stamped by MinIO, so no two processes' clocks are ever compared. An instance whose heartbeat is `TUS_HEARTBEAT_TIMEOUT` seconds old (or
gone) is dead, and its locks are taken over at once.

The age read is never more than the true age, so a live instance is never judged dead by the
measurement itself: the answer's time is MinIO's request id (the nanoseconds at which it took
the request, on MinIO; used only when it agrees with `Date`), otherwise `Date`, which counts
whole seconds and so can only make a beat look younger; a LastModified without milliseconds
(some S3 servers) counts as a second later. So the timeout needs only room for a late beat
above the interval (half a second at least). Being wrong costs no data: an instance that was
only slow is fenced by the writer's conditional writes (`writer.py`) and its request stops;
the verdict only decides when a waiter may try.

On a graceful stop (`stop_all`, from the shutdown path and at exit) the thread ends and the
instance's beats are deleted, after the process's uploads let go of their locks.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

import urllib3
from ..config import Settings
from . import chores, pokes
from .objects import BEAT_REFUSED_PAUSES, QUICK, Objects
from .system import SystemBucket

log = logging.getLogger("tus_server.store")

PREFIX = "instances/"
# Asked for MinIO's time only (a 404 answer has it too); never written.
CLOCK_KEY = "clock"
# Seconds a verdict on another instance is reused (a waiter polls the lock every 50 ms).
VERDICT_TTL = 0.25
TOP = 10 ** 12
# Beats that may hang at once (each for at most QUICK's timeout).
IN_FLIGHT = 4
# Seconds MinIO nodes' clocks may be apart (a beat stamped by one, aged by another's clock).
CLOCK_MARGIN = 0.5
# Seconds before a heartbeat that could not start (MinIO away) is tried again.
START_BACKOFF = 5.0


class Heartbeat:
    """This process's heartbeat object and the thread that keeps it fresh."""

    def __init__(self, objects: Objects, settings: Settings):
        self.objects = objects
        self.bucket = settings.system_bucket
        self.interval = settings.heartbeat_interval
        self.id = secrets.token_hex(8)
        self.prefix = f"{PREFIX}{self.id}/"
        self.seq = 0
        self._unsettled: dict[int, str] = {}  # beats not yet superseded by a later one
        self._in_flight = 0
        self._guard = threading.Lock()
        self.pid = os.getpid()
        self.writes = 0  # heartbeat PUTs sent, for the request-rate figure
        self.landed_sent = float("-inf")  # time.monotonic() when the newest landed beat was sent
        self._body = json.dumps({"instance": self.id, "host": socket.gethostname(),
                                 "pid": self.pid, "started": time.time()}).encode()
        self._stop = threading.Event()
        self._pokes: Optional[pokes.Listener] = None
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="tus-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        """Write the first heartbeat before any lock can name this instance."""
        SystemBucket(self.objects, self.bucket).ensure()
        self._beat()
        self._thread.start()
        try:
            self._pokes = pokes.Listener(self.id, pokes.dispatch)
        except OSError as exc:  # no socket here: hand-overs wait for the keeper's own look
            log.info("no poke socket for instance=%s (%s)", self.id, exc)
        return self

    def _beat(self) -> None:
        """One PUT of a key never written before, given up after a few seconds."""
        with self._guard:
            self.writes += 1
            self.seq += 1
            seq = self.seq
            self._unsettled[seq] = key = f"{self.prefix}{TOP - seq:012d}"
        sent = time.monotonic()
        status = self.objects.put_quickly(self.bucket, key, self._body,
                                          {"Content-Type": "application/json"},
                                          pauses=BEAT_REFUSED_PAUSES, context=self.id)
        if status != 200:
            raise OSError(f"PUT answered {status}")
        # In: every earlier beat (written, abandoned, or still hanging, which may land later)
        # is superseded and deleted in the background.
        with self._guard:
            self.landed_sent = max(self.landed_sent, sent)
            stale = [k for n, k in self._unsettled.items() if n < seq]
            self._unsettled = {n: k for n, k in self._unsettled.items() if n >= seq}
        if stale:
            chores.submit(lambda: self._delete(stale), attempts=5)

    def _delete(self, keys: list[str]) -> bool:
        while keys:
            self.objects.remove_quickly(self.bucket, keys[-1])
            keys.pop()
        return True

    def _run(self) -> None:
        """A beat every interval, each in a thread of its own: a beat that hangs on its key
        never holds up the next one (at most `IN_FLIGHT` wait at once)."""
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + self.interval, time.monotonic())
            with self._guard:
                if self._in_flight >= IN_FLIGHT:
                    continue
                self._in_flight += 1
            threading.Thread(target=self._beat_logged, name="tus-heartbeat-put",
                             daemon=True).start()

    def _beat_logged(self) -> None:
        try:
            self._beat()
        except Exception as exc:  # MinIO away: once per streak, then quiet until it is back
            if not self._failing:
                log.warning("heartbeat not written (%s); this instance's locks may be "
                            "taken over", exc)
            self._failing = True
            return
        finally:
            with self._guard:
                self._in_flight -= 1
        if self._failing:
            log.info("heartbeat written again instance=%s", self.id)
        self._failing = False

    def stop(self) -> None:
        """End the thread and delete the beats (other instances then see this one gone)."""
        self._stop.set()
        if self._pokes is not None:
            self._pokes.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            for key in self.objects.list_quickly(self.bucket, self.prefix, 1000):
                self.objects.remove_quickly(self.bucket, key)
        except Exception as exc:  # MinIO stopped first: the object goes stale on its own
            log.info("heartbeat object not removed instance=%s (%s)", self.id,
                     type(exc).__name__)


# One heartbeat per process and system bucket; a forked child starts its own.
_beats: dict[tuple[str, str], Heartbeat] = {}
_beats_guard = threading.Lock()
_stopped = False
_failed_at: dict[tuple[str, str], float] = {}  # when a heartbeat last failed to start


def stop_all() -> None:
    """Stop this process's heartbeats for good (graceful shutdown); later locks name no
    instance and fall back to the lease."""
    global _stopped
    with _beats_guard:
        _stopped = True
        beats = [beat for beat in _beats.values() if beat.pid == os.getpid()]
        _beats.clear()
    for beat in beats:
        beat.stop()


atexit.register(stop_all)


class Instances:
    """A store's view of heartbeats: its own instance id, and other instances' liveness."""

    def __init__(self, objects: Objects, settings: Settings):
        self.objects = objects
        self.settings = settings
        self.bucket = settings.system_bucket
        self._verdicts: dict[str, tuple[float, bool]] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.heartbeat_interval > 0

    def own_id(self) -> Optional[str]:
        """This process's instance id, starting its heartbeat on first use; None when
        heartbeats are off, stopped, or cannot be written (locks then rely on the lease)."""
        if not self.enabled or _stopped:
            return None
        slot = (self.settings.minio_endpoint, self.bucket)
        with _beats_guard:
            beat = _beats.get(slot)
            if beat is not None and beat.pid == os.getpid():
                return beat.id
            if time.monotonic() - _failed_at.get(slot, -START_BACKOFF) < START_BACKOFF:
                return None
            try:
                beat = Heartbeat(self.objects, self.settings).start()
            except Exception as exc:
                _failed_at[slot] = time.monotonic()
                log.warning("heartbeat could not start (%s); locks rely on TUS_LOCK_LEASE", exc)
                return None
            _beats[slot] = beat
            return beat.id

    def own_beat_fresh_until(self, instance: str) -> Optional[float]:
        """time.monotonic() before which no other instance can find heartbeat `instance` of
        this process `TUS_HEARTBEAT_TIMEOUT` old: MinIO stamped the newest beat that landed
        after it was sent (less `CLOCK_MARGIN`, for distributed nodes' clocks). None when this
        process writes no such heartbeat."""
        with _beats_guard:
            beat = next((b for b in _beats.values()
                         if b.id == instance and b.pid == os.getpid()), None)
        if beat is None or not self.enabled:
            return None
        return beat.landed_sent + self.settings.heartbeat_timeout - CLOCK_MARGIN

    def is_dead(self, instance: Optional[str]) -> bool:
        """Has `instance`'s heartbeat gone silent for TUS_HEARTBEAT_TIMEOUT (MinIO's clock)?
        False when unsure (MinIO not answering): then only the lease can free the lock."""
        if not instance or not self.enabled:
            return False
        cached = self._verdicts.get(instance)
        now = time.monotonic()
        if cached is not None and now - cached[0] < VERDICT_TTL:
            return cached[1]
        age = self.age(instance)
        dead = age is not None and age >= self.settings.heartbeat_timeout
        self._verdicts[instance] = (now, dead)
        if len(self._verdicts) > 1000:  # instances come and go; forget old verdicts
            self._verdicts = {k: v for k, v in self._verdicts.items() if now - v[0] < 60}
        return dead

    def age(self, instance: str) -> Optional[float]:
        """Seconds since `instance`'s last heartbeat by MinIO's clock, at most the true age
        (module docstring); inf when it has none, None when MinIO did not say."""
        try:
            beats = self.objects.list_dated_quickly(self.bucket, f"{PREFIX}{instance}/", 1)
        except Exception:
            return None
        if not beats:
            return float("inf")  # stopped gracefully, or never wrote one
        written = beats[0][1]
        now = self._now()
        if now is None or written is None:
            return None
        doubt = 1.0 if written.microsecond == 0 else 0.0  # listed in whole seconds
        return (now - written).total_seconds() - doubt

    def _now(self) -> Optional[datetime]:
        """MinIO's time, from its answer to a HEAD of a key nobody writes (`CLOCK_KEY`): not
        of the beat itself, whose key may be one a dead MinIO node left locked (a HEAD of it
        would wait out its timeout)."""
        url = self.objects.client.get_presigned_url("HEAD", self.bucket, CLOCK_KEY,
                                                    expires=timedelta(minutes=15))
        try:
            response = self.objects.quick_http.request("HEAD", url, retries=False,
                                                       timeout=QUICK)
        except (urllib3.exceptions.HTTPError, OSError):
            return None
        if response.status not in (200, 404):
            return None
        try:
            date = parsedate_to_datetime(response.headers["Date"])
        except (KeyError, TypeError, ValueError):
            return None
        return request_time(response.headers.get("x-amz-request-id"), date) or date


def request_time(request_id: Optional[str], date: datetime) -> Optional[datetime]:
    """MinIO names each request by the hex of the nanoseconds at which it took it; that time,
    when `request_id` is such a name within the second `date` says (else None)."""
    try:
        stamp = datetime.fromtimestamp(int(request_id, 16) / 1e9, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    offset = (stamp - date).total_seconds()
    return stamp if 0.0 <= offset < 1.0 else None
