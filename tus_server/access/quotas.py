"""Per-owner limits: how many uploads at once, how many bytes stored and reserved.

Counted in the owner's usage record (storage/usage.py), not by reading every stored upload's
info: a creation reads and writes that one object. Each change is a conditional write, so the
limits hold under parallel requests in any number of processes and instances.

What counts:
* bytes: an upload's length once known; while it is deferred, every byte it was allowed to
  receive. A deferred body is let in only as far as the owner's record was raised first (the
  whole `Content-Length` at once, or a chunk at a time for a chunked body), so bytes RECEIVED
  count whatever the length state, and a body that would pass the limit is a 413 (a chunked
  one after what still fitted was stored). A final upload of a concatenation holds no bytes
  of its own (it reads its partials, which cannot be deleted while it exists).
* uploads (TUS_MAX_UPLOADS_PER_OWNER): the unfinished ones, and the ones finished without
  holding a byte: empty uploads (until they expire) and finals (until deleted).

When a limit is hit, the owner's record is counted again from the infos of that owner's
uploads (a crash may have left an over-count) before the request is refused.
"""
from __future__ import annotations

from typing import Optional

from .. import errors
from ..config import Settings
from ..storage.store import Store, UploadInfo
from ..storage.usage import Record, Usage, entry_for, totals

Refusal = (errors.TooManyRequests, errors.PayloadTooLarge)


def _too_many_bytes(settings: Settings, owner: str, used: int, adding: int) -> errors.TusError:
    return errors.PayloadTooLarge(
        f"{owner} stores or has reserved {used} bytes; {adding} more would pass the "
        f"{settings.max_bytes_per_owner} bytes allowed (TUS_MAX_BYTES_PER_OWNER); delete files "
        "first")


def _change_or_recount(usage: Usage, store: Store, owner: str, apply) -> Record:
    """Apply a change that may refuse; a refusal is checked once more after a recount."""
    try:
        return usage.change(owner, apply)
    except Refusal:
        if not usage.may_recount(owner):
            raise
        usage.reconcile(owner, store)
        return usage.change(owner, apply)


def reserve_new_upload(usage: Optional[Usage], store: Store, settings: Settings,
                       info: UploadInfo) -> None:
    """Before `info` is created: its place and its bytes in the owner's record (or 429/413),
    and its marker in the owner's index. Both are kept with no limit set, too: the index
    serves the listing, and a limit set later counts right."""
    if usage is None or info.owner is None:
        return
    owner, entry = info.owner, entry_for(info)

    def apply(record: Record) -> None:
        used, places = totals(record, info.id)
        limit = settings.max_uploads_per_owner
        if limit and entry["counted"] and places >= limit:
            raise errors.TooManyRequests(
                f"{owner} already has {places} uploads that are unfinished or hold no bytes "
                f"(empty ones, concatenated finals), the most allowed at once "
                f"(TUS_MAX_UPLOADS_PER_OWNER={limit}); finish or delete one first")
        if settings.max_bytes_per_owner and used + entry["bytes"] > settings.max_bytes_per_owner:
            raise _too_many_bytes(settings, owner, used, entry["bytes"])
        record["open"][info.id] = entry

    _change_or_recount(usage, store, owner, apply)
    usage.add_to_index(info)


def rename(usage: Optional[Usage], old: UploadInfo, new: UploadInfo) -> None:
    """The pre-create hook chose another id: the reservation moves to it."""
    if usage is not None and new.owner is not None:
        usage.rename(old, new)


def release(usage: Optional[Usage], info: UploadInfo) -> None:
    """A creation that was reserved failed before the upload existed."""
    if usage is not None and info.owner is not None:
        usage.forget(info)


def reserve_length(usage: Optional[Usage], store: Store, settings: Settings, info: UploadInfo,
                   length: int) -> int:
    """Before a deferred upload declares `length`: it holds exactly that from now on. The
    bytes it held before (for `unreserve_length`)."""
    if usage is None or info.owner is None:
        return 0
    held = 0

    def apply(record: Record) -> None:
        nonlocal held
        used, _ = totals(record, info.id)
        if settings.max_bytes_per_owner and used + length > settings.max_bytes_per_owner:
            raise _too_many_bytes(settings, info.owner, used, length)
        entry = record["open"].get(info.id) or entry_for(info)
        held = entry["bytes"]
        record["open"][info.id] = {**entry, "bytes": length}

    _change_or_recount(usage, store, info.owner, apply)
    return held


def unreserve_length(usage: Optional[Usage], info: UploadInfo, held: int) -> None:
    """The declaration failed: the upload holds at least what it held before again."""
    if usage is None or info.owner is None:
        return

    def apply(record: Record) -> None:
        entry = record["open"].get(info.id)
        if entry is not None:
            entry["bytes"] = max(entry["bytes"], held)
    usage.change(info.owner, apply)


def reserve_extent(usage: Usage, store: Store, settings: Settings, info: UploadInfo,
                   end: int, partial: bool) -> int:
    """Let a deferred upload's bytes reach position `end`: the position now reserved (at
    least what was reserved before). All or nothing (413) unless `partial`, which takes what
    still fits."""
    granted = 0

    def apply(record: Record) -> None:
        nonlocal granted
        entry = record["open"].get(info.id) or entry_for(info)
        granted = entry["bytes"]
        if granted >= end:
            raise _Unchanged()
        used, _ = totals(record, info.id)
        room = settings.max_bytes_per_owner - used
        reach = min(end, room)
        if reach <= granted or (reach < end and not partial):
            raise _too_many_bytes(settings, info.owner, used + granted, end - granted)
        granted = reach
        record["open"][info.id] = {**entry, "bytes": reach}

    try:
        _change_or_recount(usage, store, info.owner, apply)
    except _Unchanged:
        pass
    except errors.PayloadTooLarge:
        if not partial:
            raise
    return granted


class _Unchanged(Exception):
    """The record already allows it: nothing to write."""


def body_meter(usage: Optional[Usage], store: Store, settings: Settings, info: UploadInfo,
               offset: int, content_length: Optional[int]):
    """Before a body is read: None when it needs no metering (a known length was reserved at
    creation, or no limit is set); for a deferred upload with a `Content-Length`, the whole
    body is reserved now (or 413 before a byte is read), else a function that wraps the body
    in a `QuotaMeter` (a chunked body, reserved a chunk ahead as it comes)."""
    if usage is None or info.owner is None or info.length is not None \
            or not settings.max_bytes_per_owner:
        return None
    if content_length is not None:
        reserve_extent(usage, store, settings, info, offset + content_length, partial=False)
        return None

    def reserve(end: int) -> int:
        return reserve_extent(usage, store, settings, info, end, partial=True)

    return lambda body: QuotaMeter(body, reserve, offset, info.chunk_size)


def over_quota(settings: Settings, offset: int) -> errors.TusError:
    """What a body cut by its `QuotaMeter` answers."""
    return errors.PayloadTooLarge(
        f"the body goes past the {settings.max_bytes_per_owner} bytes its owner may store "
        f"(TUS_MAX_BYTES_PER_OWNER); stored up to offset {offset}")


class QuotaMeter:
    """A chunked body read only as far as the quota was reserved, a chunk ahead at a time.

    When the reservation cannot grow and more body comes, reading ends (`refused`): what was
    read so far is stored, the rest is not read, and the protocol answers 413.
    """

    def __init__(self, body, reserve, start: int, step: int):
        self._body = body
        self._reserve = reserve
        self.position = start  # the upload offset of the next byte
        self.allowed = start
        self.step = step
        self.refused = False

    def __getattr__(self, name):
        return getattr(self._body, name)

    @property
    def interrupted(self) -> bool:
        return self.refused or self._body.interrupted

    def readinto(self, view) -> int:
        if self.refused or not len(view):
            return 0
        if self.position >= self.allowed:
            n = self._body.readinto(view[:1])  # is there more? (then it needs room)
            if not n:
                return 0
            self.allowed = self._reserve(self.position + self.step)
            if self.allowed <= self.position:
                self.refused = True
                self._body.stop("quota")
                return 0
            self.position += 1
            return 1
        n = self._body.readinto(view[:self.allowed - self.position])
        self.position += n
        return n


def finished(usage: Optional[Usage], info: UploadInfo) -> None:
    """The upload reached its length: it holds its length and no longer takes a place (unless
    it holds no bytes: see `storage.usage.counted`)."""
    if usage is not None and info.owner is not None:
        usage.settle(info)
