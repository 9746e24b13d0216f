"""Per-owner limits: how many unfinished uploads at once, how many bytes stored and reserved.

Why counted from MinIO: every worker process and every instance sees the same infos, so the
count is right whatever process served the earlier requests, and there is no usage counter
that a crash could leave wrong. The cost is one info read per upload in storage, paid only at
creation (and when a deferred length is declared) and only when a limit is set. Two creations
racing in different processes can both pass the check; the limit can be passed by at most the
number of requests in flight at once, which is what a simple limit may allow.
"""
from __future__ import annotations

import time
from typing import Optional

from .. import errors
from ..config import Settings
from ..storage.store import Store, UploadInfo, UploadNotFound


def _owned(store: Store, owner: str, exclude: Optional[str] = None) -> list[UploadInfo]:
    owned = []
    for upload_id in store.list_ids():
        if upload_id == exclude:
            continue
        try:
            info = store.get(upload_id)
        except UploadNotFound:  # terminated while we counted
            continue
        if info.owner == owner:
            owned.append(info)
    return owned


def _reserved(info: UploadInfo) -> int:
    """Bytes an upload holds or may still claim: its length, else what arrived so far. A final
    upload of a concatenation stores nothing of its own (it reads its partials), so it counts 0."""
    if info.concat == "final":
        return 0
    return info.length if info.length is not None else info.offset


def check_new_upload(store: Store, settings: Settings, owner: Optional[str],
                     length: Optional[int], final: bool = False) -> None:
    """Before creating an upload of `length` bytes (None: deferred) for `owner`; a final
    upload is finished at once and reads its partials' bytes, so it is limited by neither."""
    limited = settings.max_uploads_per_owner or settings.max_bytes_per_owner
    if final or owner is None or not limited:
        return
    now = time.time()
    owned = [i for i in _owned(store, owner)
             if i.completed or not i.expires or i.expires >= now]  # expired ones are going
    limit = settings.max_uploads_per_owner
    if limit:
        running = sum(1 for info in owned if not info.completed)
        if running >= limit:
            raise errors.TooManyRequests(
                f"{owner} already has {running} unfinished uploads, the most allowed at once "
                f"(TUS_MAX_UPLOADS_PER_OWNER={limit}); finish or delete one first")
    _check_bytes(settings, owner, sum(_reserved(i) for i in owned), length or 0)


def check_declared_length(store: Store, settings: Settings, upload: UploadInfo,
                          length: int) -> None:
    """Before a deferred upload declares its length (it counted only its offset until now)."""
    if upload.owner is None or not settings.max_bytes_per_owner:
        return
    used = sum(_reserved(i) for i in _owned(store, upload.owner, exclude=upload.id))
    _check_bytes(settings, upload.owner, used, length)


def _check_bytes(settings: Settings, owner: str, used: int, adding: int) -> None:
    limit = settings.max_bytes_per_owner
    if limit and used + adding > limit:
        raise errors.PayloadTooLarge(
            f"{owner} stores or has reserved {used} bytes; {adding} more would pass the "
            f"{limit} bytes allowed (TUS_MAX_BYTES_PER_OWNER); delete files first")
