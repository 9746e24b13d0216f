"""Per-owner usage records and the concatenation index, in the system bucket.

    bucket $TUS_SYSTEM_BUCKET (never an upload id: those are `tus-` + 32 hex)
      usage/<sha256 of the owner>.json   {"owner": sub, "uploads": {id: {"bytes", "counted",
                                          "since"}}}: what each of the owner's uploads holds
      usage/.built                       the records were counted from the infos once
      finals/<partial id>/<final id>     a final upload reads this partial

One record per owner is both the owner's index (`GET /files` of a non-admin reads it and the
infos of one page, not every stored upload's info) and the quota's counter (creation reads and
writes it once). Every change is a read, a change and a conditional PUT (`If-Match` on the ETag
read, `If-None-Match: *` for a new record) retried on 412, so parallel requests in any process
or instance never lose each other's changes, and a change that would pass a limit is refused
before any byte it stands for is stored.

`bytes` is a high-water mark: the upload's length once known, else every byte position a body
was allowed to reach (a chunk is reserved before it is read into the store), so bytes that a
failed or cut PATCH left past the offset stay counted until the length is fixed. `counted`
says the upload takes a place under TUS_MAX_UPLOADS_PER_OWNER. Crash safety comes from the
order: the record is raised before the store is written and lowered after it was changed, so a
crash leaves an over-count, never an under-count. `reconcile` (when a limit is hit) and
`rebuild` (`cleanup`, and once on first use) count again from the infos.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from typing import Callable, Iterable, Optional

from minio.error import S3Error

from ..config import Settings
from .objects import Objects, storage_errors
from .store import StorageUnavailable, UploadInfo, UploadLocked, UploadNotFound

log = logging.getLogger("tus_server.usage")
USAGE_PREFIX = "usage/"
BUILT = USAGE_PREFIX + ".built"
FINALS_PREFIX = "finals/"
# A record entry (or concatenation marker) without an info is a creation in progress for this
# long; older ones are left over from a crash and are dropped when counted again.
GRACE = 120.0
ATTEMPTS = 40
# An owner is counted again at most this often per process: a recount reads the infos of all
# the owner's uploads, and a refused client may keep asking.
RECOUNT_EVERY = 10.0

Record = dict  # {"owner": str, "uploads": {id: {"bytes": int, "counted": bool, "since": float}}}


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


class Usage:
    def __init__(self, settings: Settings, objects: Objects,
                 all_infos: Callable[[], Iterable[UploadInfo]]):
        self.settings = settings
        self.objects = objects
        self.all_infos = all_infos  # every stored upload's info (the store's `list`)
        self.bucket = settings.system_bucket
        self._ready = False
        self._guard = threading.Lock()
        self._recounted: dict[str, float] = {}

    # ----------------------------------------------------------------- objects
    @staticmethod
    def key(owner: str) -> str:
        return USAGE_PREFIX + hashlib.sha256(owner.encode()).hexdigest() + ".json"

    def _ensure_bucket(self) -> None:
        client = self.objects.client
        with storage_errors():
            if not client.bucket_exists(self.bucket):
                try:
                    client.make_bucket(self.bucket)
                except S3Error as exc:  # another process made it first
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def _get(self, key: str) -> tuple[Optional[bytes], Optional[str]]:
        try:
            with storage_errors("usage"):
                response = self.objects.client.get_object(self.bucket, key)
                try:
                    return response.read(), response.headers.get("ETag", "").strip('"')
                finally:
                    response.close()
                    response.release_conn()
        except UploadNotFound:
            return None, None

    def _put(self, key: str, data: bytes, etag: Optional[str]) -> Optional[str]:
        return self.objects.put_in_bucket(self.bucket, key, data,
                                          {"Content-Type": "application/json"},
                                          if_match=etag, if_none_match=etag is None,
                                          context="usage")

    def read(self, owner: str) -> tuple[Record, Optional[str]]:
        """The owner's record and its ETag (None: there is none yet)."""
        self.ready()
        return self._read(owner)

    def _read(self, owner: str) -> tuple[Record, Optional[str]]:
        data, etag = self._get(self.key(owner))
        if data is None:
            return {"owner": owner, "uploads": {}}, None
        return json.loads(data), etag

    def change(self, owner: str, change: Callable[[Record], None]) -> Record:
        """Apply `change` to the owner's record and store it, conditionally; `change` may
        raise to refuse (nothing is written). Retried from a fresh read when another request
        changed the record first."""
        self.ready()
        return self._change(owner, change)

    def _change(self, owner: str, change: Callable[[Record], None]) -> Record:
        for attempt in range(ATTEMPTS):
            record, etag = self._read(owner)
            change(record)
            data = json.dumps(record, separators=(",", ":")).encode()
            if self._put(self.key(owner), data, etag) is not None:
                return record
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise StorageUnavailable(f"the usage record of {owner!r} changes too often")

    def set_entry(self, owner: str, upload_id: str, entry: Optional[dict]) -> None:
        """Replace (None: remove) one upload's entry, without a limit to check."""
        def apply(record: Record) -> None:
            if entry is None:
                record["uploads"].pop(upload_id, None)
            else:
                record["uploads"][upload_id] = entry
        self.change(owner, apply)

    def forget(self, info: UploadInfo) -> None:
        """After an upload was removed (any path: DELETE, a hook, the sweeper)."""
        if info.owner is not None:
            self.set_entry(info.owner, info.id, None)
        if info.concat == "final":
            self.unlink_final(info)

    def newest_first(self, owner: str) -> list[str]:
        """The owner's upload ids, newest first (the index of a non-admin listing)."""
        uploads = self.read(owner)[0]["uploads"]
        return sorted(uploads, key=lambda upload_id: uploads[upload_id]["since"], reverse=True)

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
        """Count the owner's entries again from their infos (`store.get`): an entry whose
        upload is gone (and is not a creation in progress) goes, an upload past its expiry is
        removed (`store.terminate`, as the sweeper would: unfinished or empty), a finished one no longer counts as
        unfinished. A deferred upload keeps the reservation it was granted."""
        infos: dict[str, Optional[UploadInfo]] = {}
        now = time.time()
        for upload_id in self.read(owner)[0]["uploads"]:
            try:
                info = store.get(upload_id)
                if info.expires is not None and info.expires < now:  # as `store.expire`
                    store.terminate(upload_id)
                    info = None
            except (UploadNotFound, UploadLocked):
                info = None
            infos[upload_id] = info

        def apply(record: Record) -> None:
            for upload_id, entry in list(record["uploads"].items()):
                if upload_id not in infos:
                    continue  # added since we read the infos
                info = infos[upload_id]
                if info is None:
                    if entry["since"] < now - GRACE:
                        del record["uploads"][upload_id]
                    continue
                reserved = entry["bytes"] if info.length is None else 0
                record["uploads"][upload_id] = entry_for(info, reserved)
        self.change(owner, apply)

    def ready(self) -> None:
        """Once per process: make sure the records were counted (the first server to use this
        system bucket counts every stored upload once)."""
        if self._ready:
            return
        with self._guard:
            if self._ready:
                return
            self._ensure_bucket()
            if self._get(BUILT)[0] is None:
                self._rebuild()
            self._ready = True

    def rebuild(self) -> int:
        """Count every owner's record again from the infos of all stored uploads: the repair
        path (`cleanup`); the number of owners. Entries of creations in progress and
        reservations still growing stay."""
        self._ensure_bucket()
        return self._rebuild()

    def _rebuild(self) -> int:
        by_owner: dict[str, dict[str, UploadInfo]] = {}
        for info in self.all_infos():
            if info.owner is not None:
                by_owner.setdefault(info.owner, {})[info.id] = info
        with storage_errors("usage"):
            names = [o.object_name for o in self.objects.client.list_objects(
                self.bucket, prefix=USAGE_PREFIX) if o.object_name.endswith(".json")]
        known = {self.key(owner) for owner in by_owner}
        for name in names:
            if name not in known:  # an owner with no upload left
                data, _ = self._get(name)
                if data is not None:
                    by_owner.setdefault(json.loads(data)["owner"], {})
        for owner, owned in by_owner.items():
            def apply(record: Record, owned=owned) -> None:
                now = time.time()
                fresh = {}
                for upload_id, info in owned.items():
                    old = record["uploads"].get(upload_id, {})
                    growing = info.length is None and info.updated > now - GRACE
                    fresh[upload_id] = entry_for(info, old.get("bytes", 0) if growing else 0)
                for upload_id, entry in record["uploads"].items():
                    if upload_id not in fresh and entry["since"] >= now - GRACE:
                        fresh[upload_id] = entry
                record["uploads"] = fresh
            self._change(owner, apply)
        self._put(BUILT, b"{}", None)
        return len(by_owner)

    # ----------------------------------------------------------------- concatenation
    def link_final(self, final_id: str, partial_ids: list[str]) -> None:
        """Before a final upload is created: its partials may not be deleted while it exists."""
        self.ready()
        for partial_id in partial_ids:
            self._put(f"{FINALS_PREFIX}{partial_id}/{final_id}", b"{}", None)

    def unlink_final(self, info: UploadInfo) -> None:
        with storage_errors("usage"):
            for partial_id in info.partials:
                self.objects.client.remove_object(self.bucket,
                                                  f"{FINALS_PREFIX}{partial_id}/{info.id}")

    def finals_of(self, partial_id: str, store) -> list[str]:
        """The final uploads that read `partial_id` (`store.get` tells which exist: markers of
        removed finals are dropped; a young marker without its final is a creation in
        progress, and counts)."""
        self.ready()
        prefix = f"{FINALS_PREFIX}{partial_id}/"
        with storage_errors("usage"):
            markers = list(self.objects.client.list_objects(self.bucket, prefix=prefix))
        finals = []
        for marker in markers:
            final_id = marker.object_name[len(prefix):]
            try:
                store.get(final_id)
                finals.append(final_id)
                continue
            except UploadNotFound:
                pass
            if marker.last_modified and marker.last_modified.timestamp() < time.time() - GRACE:
                with storage_errors("usage"):
                    self.objects.client.remove_object(self.bucket, marker.object_name)
            else:
                finals.append(final_id)
        return finals

    def linked_partials(self) -> dict[str, list[str]]:
        """Every partial that a final reads: {partial id: [final ids]} (the sweeper's list)."""
        self.ready()
        linked: dict[str, list[str]] = {}
        with storage_errors("usage"):
            for marker in self.objects.client.list_objects(self.bucket, prefix=FINALS_PREFIX,
                                                           recursive=True):
                partial_id, _, final_id = marker.object_name[len(FINALS_PREFIX):].partition("/")
                linked.setdefault(partial_id, []).append(final_id)
        return linked

    def expire_orphan_finals(self, store) -> list[str]:
        """Remove the final uploads whose partials are gone (a final reads its partials'
        chunks: without them it can never be read again); the ids removed."""
        removed = []
        for partial_id, final_ids in self.linked_partials().items():
            try:
                store.get(partial_id)
                continue
            except UploadNotFound:
                pass
            for final_id in final_ids:
                try:
                    store.terminate(final_id)  # forgets its markers (`forget`)
                    removed.append(final_id)
                    log.info("swept upload_id=%s (its partial %s is gone)", final_id, partial_id)
                except UploadNotFound:
                    info = UploadInfo(id=final_id, length=0, partials=[partial_id])
                    self.unlink_final(info)
                except UploadLocked:
                    continue
        return removed
