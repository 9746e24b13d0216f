"""The durable hook outbox: post-finish and post-terminate are never lost.

tusd sends post-finish once, from memory. Here the event is first written to MinIO, before the
client hears that its upload finished, and a background deliverer in every worker sends it
until the endpoint answers 2xx, across restarts and processes:

    bucket $TUS_SYSTEM_BUCKET (never an upload id: those are `tus-` + 32 hex)
      outbox/<event id>.json   {"id", "type", "body", "headers", "created", "attempts",
                                "next_attempt", "claimed_until", "last_error"}

A deliverer claims a due event by rewriting it with `If-Match` on the ETag it read (a 412 means
another worker got it first) and a claim that lasts a little longer than one hook request; it
deletes the object once delivered, or records the error and the next attempt time (backoff
doubling from TUS_HOOKS_BACKOFF up to TUS_HOOKS_OUTBOX_MAX_BACKOFF). A worker that dies while
delivering leaves a claim that simply runs out. Delivery is at least once: a worker killed
after the endpoint answered but before the delete sends the event again, with the same
`Idempotency-Key` header (the event id), so receivers can drop the repeat.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Callable, Optional

from ..config import Settings
from ..storage.objects import Objects, storage_errors
from ..storage.store import UploadNotFound
from ..storage.system import SystemBucket

log = logging.getLogger("tus_server.hooks")
PREFIX = "outbox/"


# Request headers that carry the caller's credentials. tusd's event lists every request header;
# an event stored in MinIO keeps these only when TUS_HOOKS_FORWARD_HEADERS forwards them anyway.
CREDENTIALS = ("authorization", "proxy-authorization", "cookie")


def at_rest(body: dict, forwarded: dict) -> dict:
    """`body` without the credential headers in its `HTTPRequest` that are not forwarded."""
    request = body.get("Event", {}).get("HTTPRequest")
    if not request or not request.get("Header"):
        return body
    asked = {name.lower() for name in forwarded}
    header = {name: values for name, values in request["Header"].items()
              if name.lower() not in CREDENTIALS or name.lower() in asked}
    return {**body, "Event": {**body["Event"], "HTTPRequest": {**request, "Header": header}}}


class Outbox:
    """Events in the system bucket, claimed and updated with conditional writes."""

    def __init__(self, settings: Settings, objects: Objects):
        self.settings = settings
        self.objects = objects
        self.bucket = settings.system_bucket
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if not self._bucket_ready:
            SystemBucket(self.objects, self.bucket).ensure()
            self._bucket_ready = True

    def _put(self, event: dict, if_match: Optional[str] = None,
             if_none_match: bool = False) -> Optional[str]:
        """Write the event under a precondition: its new ETag, or None when it failed."""
        self._ensure_bucket()
        return self.objects.put_in_bucket(
            self.bucket, PREFIX + event["id"] + ".json",
            json.dumps(event, separators=(",", ":")).encode(),
            {"Content-Type": "application/json"}, if_match, if_none_match, context="outbox")

    def add(self, hook_type: str, body: dict, headers: dict) -> str:
        """Store a new event durably; its id (also its Idempotency-Key). `headers` are the
        ones TUS_HOOKS_FORWARD_HEADERS forwards."""
        event_id = f"{int(time.time() * 1000):013d}-{secrets.token_hex(8)}"
        event = {"id": event_id, "type": hook_type, "body": at_rest(body, headers),
                 "headers": headers,
                 "created": time.time(), "attempts": 0, "next_attempt": 0.0,
                 "claimed_until": 0.0, "last_error": None}
        if self._put(event, if_none_match=True) is None:
            raise OSError(f"outbox event {event_id} exists already")
        return event_id

    def read(self, event_id: str) -> tuple[Optional[dict], Optional[str]]:
        self._ensure_bucket()
        try:
            with storage_errors():
                response = self.objects.client.get_object(self.bucket,
                                                          PREFIX + event_id + ".json")
                try:
                    return json.loads(response.read()), response.headers.get("ETag", "").strip('"')
                finally:
                    response.close()
                    response.release_conn()
        except UploadNotFound:  # delivered or dropped meanwhile
            return None, None

    def ids(self) -> list[str]:
        """Ids of undelivered events, oldest first (ids begin with their creation time)."""
        self._ensure_bucket()
        with storage_errors():
            names = [o.object_name for o in self.objects.client.list_objects(
                self.bucket, prefix=PREFIX)]
        return sorted(n[len(PREFIX):-len(".json")] for n in names if n.endswith(".json"))

    def pending(self) -> list[dict]:
        events = []
        for event_id in self.ids():
            try:
                event, _ = self.read(event_id)
            except ValueError:  # shown, so that it can be dropped
                event = {"id": event_id, "type": "(unreadable)", "attempts": 0,
                         "body": {"Event": {"Upload": {"ID": "-"}}}, "next_attempt": 0.0,
                         "last_error": "the stored event is not JSON"}
            if event is not None:
                events.append(event)
        return events

    def claim(self, event_id: str, lease: float) -> Optional[tuple[dict, str]]:
        """Take a due, unclaimed event for `lease` seconds: (event, ETag) or None."""
        event, etag = self.read(event_id)
        now = time.time()
        if event is None or event["next_attempt"] > now or event["claimed_until"] > now:
            return None
        event["claimed_until"] = now + lease
        new_etag = self._put(event, if_match=etag)
        return (event, new_etag) if new_etag else None

    def delivered(self, event_id: str) -> None:
        with storage_errors():
            self.objects.client.remove_object(self.bucket, PREFIX + event_id + ".json")

    def failed(self, event: dict, etag: str, error: str) -> None:
        """Record the failure and when to try again (under our claim; lost claim: no-op)."""
        event["attempts"] += 1
        delay = min(self.settings.hooks_backoff * 2 ** (event["attempts"] - 1),
                    self.settings.hooks_outbox_max_backoff)
        event.update(next_attempt=time.time() + delay, claimed_until=0.0, last_error=error)
        self._put(event, if_match=etag)

    def retry(self, event_id: str) -> bool:
        """Make an event due now (the CLI's `hooks retry`)."""
        event, etag = self.read(event_id)
        if event is None:
            return False
        event.update(next_attempt=0.0, claimed_until=0.0)
        return self._put(event, if_match=etag) is not None

    def drop(self, event_id: str) -> bool:
        if event_id not in self.ids():
            return False
        self.delivered(event_id)
        return True


class Deliverer:
    """Sends due outbox events in a daemon thread; `wake()` after adding one sends it at once."""

    def __init__(self, outbox: Outbox, send: Callable[[dict], None], poll: float, lease: float,
                 on_depth: Callable[[int], None] = lambda depth: None):
        self.outbox = outbox
        self.send = send
        self.poll = poll
        self.lease = lease
        self.on_depth = on_depth
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tus-hook-deliverer", daemon=True)

    def start(self) -> "Deliverer":
        self.thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception as exc:
                log.warning("hook outbox scan failed: %s", exc)
            self._wake.wait(self.poll)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass over the outbox; the number of events delivered."""
        ids = self.outbox.ids()
        self.on_depth(len(ids))
        sent = 0
        for event_id in ids:
            if self._stop.is_set():
                break
            try:
                claimed = self.outbox.claim(event_id, self.lease)
            except ValueError:  # not JSON: one damaged object must not stop the others
                log.error("hook outbox event %s is unreadable; left for `hooks drop`", event_id)
                continue
            if claimed is None:
                continue
            event, etag = claimed
            try:
                self.send(event)
            except Exception as exc:
                self.outbox.failed(event, etag, str(exc))
                continue
            self.outbox.delivered(event_id)
            sent += 1
        if sent:
            self.on_depth(len(ids) - sent)
        return sent
