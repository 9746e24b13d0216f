"""Per-owner usage records and per-owner indexes, in the system bucket (storage/system.py).

    bucket $TUS_SYSTEM_BUCKET (never an upload id: those are `tus-` + 32 hex)
      usage/<owner key>.json     {"owner": sub, "settled": {"bytes", "uploads"},
                                  "open": {id: {"bytes", "counted", "since"}}}
      usage/.built               the records were counted from the infos once
      index/<owner key>/<inverted created ms>-<id>   an empty marker per upload, newest first
      finals/<partial id>/<final id>                 storage/concatenations.py

The record is the quota's counter: a creation reads and writes it once, whatever the owner or
anyone else stores. Finished uploads that hold bytes are only summed (`settled`); the others
(unfinished, deferred, empty, finals, creations in progress) have an entry each (`open`), so the
record stays as small as what the owner has in flight. Every change is a read, a change and a
conditional PUT (`If-Match` on the ETag read, `If-None-Match: *` for a new record) retried on
412, so parallel requests in any process or instance never lose each other's changes, and a
change that would pass a limit is refused before any byte it stands for is stored. The index
is one marker object per upload (written once, removed with the upload: no contention), so a
non-admin listing lists the owner's markers and reads the infos of one page.

An open entry's `bytes` is a high-water mark: the upload's length once known, else every byte
position a body was allowed to reach (a chunk is reserved before it is read into the store), so
bytes a failed or cut PATCH left past the offset stay counted until the length is fixed.
`counted` says the upload takes a place under TUS_MAX_UPLOADS_PER_OWNER. Crash safety comes
from the order: the record is raised before the store is written and lowered after it was
changed, so a crash leaves an over-count, never an under-count. `reconcile` (when a limit is
hit) and `rebuild` (`cleanup`, and once on first use) count again from the infos.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import weakref
from typing import Callable, Iterable, Optional

from ..config import Settings
from .concatenations import Concatenations
from .objects import Objects
from .store import StorageUnavailable, UploadInfo, UploadLocked, UploadNotFound
from .system import SystemBucket

log = logging.getLogger("tus_server.usage")
USAGE_PREFIX = "usage/"
BUILT = USAGE_PREFIX + ".built"
INDEX_PREFIX = "index/"
# A record entry (or an index marker) without an info is a creation in progress for this long;
# older ones are left over from a crash and are dropped when counted again.
GRACE = 120.0
ATTEMPTS = 40
# An owner is counted again at most this often per process: a recount reads the infos of all
# the owner's uploads, and a refused client may keep asking.
RECOUNT_EVERY = 10.0

Record = dict  # {"owner", "settled": {"bytes", "uploads"}, "open": {id: entry}}


def new_record(owner: str) -> Record:
    return {"owner": owner, "settled": {"bytes": 0, "uploads": 0}, "open": {}}


def entry_for(info: UploadInfo, reserved: int = 0) -> dict:
    """What an upload holds, from its info (`reserved`: a deferred upload's high-water mark)."""
    return {"bytes": holds(info, reserved), "counted": counted(info), "since": info.created}


def holds(info: UploadInfo, reserved: int = 0) -> int:
    """Bytes an upload stores or may still store: a final stores none of its own (it reads its
    partials, which cannot be removed while it exists)."""
    if info.concat == "final":
        return 0
    return info.length if info.length is not None else max(info.offset, reserved)


def counted(info: UploadInfo) -> bool:
    """Unfinished uploads take a place, and so do the ones that are finished without holding
    a byte (empty uploads until they expire, finals until deleted): else they would be free."""
    return not info.completed or info.concat == "final" or not info.length


def settles(info: UploadInfo) -> bool:
    """A finished upload that holds bytes is only summed in the record."""
    return info.completed and not counted(info)


def totals(record: Record, except_id: Optional[str] = None) -> tuple[int, int]:
    """(bytes held, places taken) by the owner's uploads, but `except_id`."""
    used, places = record["settled"]["bytes"], 0
    for upload_id, entry in record["open"].items():
        if upload_id != except_id:
            used += entry["bytes"]
            places += bool(entry["counted"])
    return used, places


class Usage:
    def __init__(self, settings: Settings, objects: Objects,
                 all_infos: Callable[[], Iterable[UploadInfo]]):
        self.settings = settings
        self.objects = objects
        self.all_infos = all_infos  # every stored upload's info (the store's `list`)
        self.bucket = settings.system_bucket
        self.system = SystemBucket(objects, self.bucket)
        self.finals = Concatenations(self.system, self.ready)
        self._ready = False
        self._guard = threading.Lock()
        self._recounted: dict[str, float] = {}
        # One change per owner at a time in this process: threads queue instead of making each
        # other's conditional writes fail (other processes still race, and retry on 412).
        self._owner_locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._owner_locks_guard = threading.Lock()

    # ----------------------------------------------------------------- objects
    @staticmethod
    def owner_key(owner: str) -> str:
        return hashlib.sha256(owner.encode()).hexdigest()

    @classmethod
    def key(cls, owner: str) -> str:
        return f"{USAGE_PREFIX}{cls.owner_key(owner)}.json"

    @classmethod
    def marker(cls, info: UploadInfo) -> str:
        """The upload's index marker: names of one owner's markers sort newest first."""
        created = max(0, 10**13 - int(info.created * 1000))
        return f"{INDEX_PREFIX}{cls.owner_key(info.owner)}/{created:013d}-{info.id}"

    # ----------------------------------------------------------------- the record
    def read(self, owner: str) -> tuple[Record, Optional[str]]:
        """The owner's record and its ETag (None: there is none yet)."""
        self.ready()
        return self._read(owner)

    def _read(self, owner: str) -> tuple[Record, Optional[str]]:
        data, etag = self.system.get(self.key(owner))
        if data is None:
            return new_record(owner), None
        return json.loads(data), etag

    def change(self, owner: str, change: Callable[[Record], None]) -> Record:
        """Apply `change` to the owner's record and store it, conditionally; `change` may
        raise to refuse (nothing is written). Retried from a fresh read when another request
        changed the record first."""
        self.ready()
        return self._change(owner, change)

    def _change(self, owner: str, change: Callable[[Record], None]) -> Record:
        with self._owner_locks_guard:
            lock = self._owner_locks.get(owner)
            if lock is None:
                lock = self._owner_locks[owner] = threading.Lock()
        with lock:
            return self._change_unlocked(owner, change)

    def _change_unlocked(self, owner: str, change: Callable[[Record], None]) -> Record:
        for attempt in range(ATTEMPTS):
            record, etag = self._read(owner)
            change(record)
            data = json.dumps(record, separators=(",", ":")).encode()
            if self.system.put(self.key(owner), data, etag) is not None:
                return record
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise StorageUnavailable(f"the usage record of {owner!r} changes too often")

    def set_entry(self, owner: str, upload_id: str, entry: Optional[dict]) -> None:
        """Replace (None: remove) one open entry, without a limit to check."""
        def apply(record: Record) -> None:
            if entry is None:
                record["open"].pop(upload_id, None)
            else:
                record["open"][upload_id] = entry
        self.change(owner, apply)

    def add_to_index(self, info: UploadInfo) -> None:
        """Before the upload is created (after its entry was reserved)."""
        self.system.put_empty(self.marker(info))

    def rename(self, old: UploadInfo, new: UploadInfo) -> None:
        """Move a reservation to the id a pre-create hook chose (one change: never absent)."""
        def apply(record: Record) -> None:
            record["open"][new.id] = record["open"].pop(old.id, None) or entry_for(new)
        self.change(new.owner, apply)
        self.add_to_index(new)
        self.system.remove(self.marker(old))

    def newest_first(self, owner: str) -> list[str]:
        """The owner's upload ids, newest first (a non-admin listing): one LIST per 1,000."""
        self.ready()
        return [_marker_id(name) for name in self._markers(owner)]

    def _markers(self, owner: str) -> list[str]:
        return self.system.names(f"{INDEX_PREFIX}{self.owner_key(owner)}/")

    def _prune_index(self, markers: list[str], infos: dict, now: float) -> None:
        """Remove the markers of uploads that are gone (not those of creations in progress)."""
        for name in markers:
            upload_id = _marker_id(name)
            if upload_id in infos and infos[upload_id] is None \
                    and _marker_created(name) < now - GRACE:
                self.system.remove(name)

    def settle(self, info: UploadInfo) -> None:
        """The upload finished: a finished upload holding bytes is only summed from now on."""
        def apply(record: Record) -> None:
            if record["open"].pop(info.id, None) is None:
                return  # removed meanwhile: nothing to settle
            if settles(info):
                record["settled"]["bytes"] += holds(info)
                record["settled"]["uploads"] += 1
            else:
                record["open"][info.id] = entry_for(info)
        self.change(info.owner, apply)

    def forget(self, info: UploadInfo) -> None:
        """After an upload was removed (any path: DELETE, a hook, the sweeper), with its last
        info. The last few ids forgotten are kept, so that a removal reported twice (two
        stalled requests) is subtracted once."""
        if info.owner is not None:
            def apply(record: Record) -> None:
                gone = record.setdefault("gone", [])
                if info.id in gone:
                    return
                gone[:] = (gone + [info.id])[-100:]
                if record["open"].pop(info.id, None) is None and settles(info):
                    settled = record["settled"]
                    settled["bytes"] = max(0, settled["bytes"] - holds(info))
                    settled["uploads"] = max(0, settled["uploads"] - 1)
            self.change(info.owner, apply)
            self.system.remove(self.marker(info))
        if info.concat == "final":
            self.finals.unlink(info)

    # ----------------------------------------------------------------- counting again
    def may_recount(self, owner: str) -> bool:
        """Whether `reconcile` may run for `owner` now (at most every RECOUNT_EVERY s)."""
        now = time.monotonic()
        with self._guard:
            if self._recounted.get(owner, -RECOUNT_EVERY) > now - RECOUNT_EVERY:
                return False
            if len(self._recounted) > 10000:
                self._recounted.clear()
            self._recounted[owner] = now
            return True

    def reconcile(self, owner: str, store) -> None:
        """Count the owner's record again from the infos of the owner's uploads (`store.get`):
        what is gone goes (but creations in progress), an upload past its expiry is removed
        (`store.terminate`, as the sweeper would), a deferred upload keeps the reservation it
        was granted."""
        now = time.time()
        infos: dict[str, Optional[UploadInfo]] = {}
        markers = self._markers(owner)
        for upload_id in {_marker_id(n) for n in markers} | set(self.read(owner)[0]["open"]):
            try:
                info = store.get(upload_id)
            except UploadNotFound:
                info = None
            if info is not None and info.expires is not None and info.expires < now:
                try:  # as `store.expire` would
                    store.terminate(upload_id)
                    info = None
                except UploadNotFound:
                    info = None
                except UploadLocked:  # in use: it stays, and counts
                    pass
            infos[upload_id] = info
        self._change(owner, lambda record: _recount(record, infos, now))
        self._prune_index(markers, infos, now)

    def ready(self) -> None:
        """Once per process: make sure the records were counted (the first server to use this
        system bucket counts every stored upload once)."""
        if self._ready:
            return
        with self._guard:
            if self._ready:
                return
            self.system.ensure()
            if self.system.get(BUILT)[0] is None:
                self._rebuild()
            self._ready = True

    def rebuild(self) -> int:
        """Count every owner's record and index (and the concatenation index) again from the
        infos of all stored uploads: the repair path (`cleanup`); the number of owners."""
        self.system.ensure()
        return self._rebuild()

    def _rebuild(self) -> int:
        now = time.time()
        by_owner: dict[str, dict[str, Optional[UploadInfo]]] = {}
        finals = []
        for info in self.all_infos():
            if info.owner is not None:
                by_owner.setdefault(info.owner, {})[info.id] = info
            if info.concat == "final":
                finals.append(info)
        self.finals.link_missing(finals)
        for name in self.system.names(USAGE_PREFIX):
            data = self.system.get(name)[0] if name.endswith(".json") else None
            if data is not None:  # an owner with no upload left, too
                by_owner.setdefault(json.loads(data)["owner"], {})
        for owner, infos in by_owner.items():
            markers = self._markers(owner)
            for info in infos.values():
                if self.marker(info) not in markers:
                    self.add_to_index(info)
            self._change(owner, lambda record, infos=infos: _recount(record, infos, now))
            self._prune_index(markers, {_marker_id(n): infos.get(_marker_id(n))
                                        for n in markers}, now)
        self.system.put(BUILT, b"{}", None)
        return len(by_owner)


def _recount(record: Record, infos: dict[str, Optional[UploadInfo]], now: float) -> None:
    """The record as the infos say (None: the upload is gone); young open entries without an
    info stay (creations in progress), old ones are left over from a crash and go."""
    settled = {"bytes": 0, "uploads": 0}
    fresh = {}
    for upload_id, entry in record["open"].items():
        if infos.get(upload_id) is None and entry["since"] >= now - GRACE:
            fresh[upload_id] = entry  # a creation in progress, or made since the infos were read
    for upload_id, info in infos.items():
        if info is None:
            continue
        if settles(info):
            settled["bytes"] += holds(info)
            settled["uploads"] += 1
        else:
            old = record["open"].get(upload_id, {})
            reserved = old.get("bytes", 0) if info.length is None else 0
            fresh[upload_id] = entry_for(info, reserved)
    record["settled"], record["open"] = settled, fresh


def _marker_id(name: str) -> str:
    return name.rsplit("/", 1)[1].split("-", 1)[1]


def _marker_created(name: str) -> float:
    return (10**13 - int(name.rsplit("/", 1)[1].split("-", 1)[0])) / 1000
