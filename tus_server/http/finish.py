"""The one finish path: every way an upload reaches its length goes through here.

The ways: a body (tus PATCH, creation-with-upload, IETF append or one-shot creation) that
reaches a known length; a length declared equal to the offset (a tus PATCH with
`Upload-Length` and no body, an IETF `Upload-Complete: ?1` without content, an IETF one-shot
with a chunked body); an upload created empty; a concatenation final.

Each asks pre-finish before the store marks the upload finished whenever the request says so
in advance (`ask`); a veto then leaves the upload as it was, unfinished and not downloadable.
Only a chunked body's end is known after it was stored: then pre-finish runs right after, and
a veto removes the upload (`settle`), so no upload is ever finished without pre-finish's
consent. After it: post-finish, the counter and the log line (`hooks.finished`), then the
owner's usage record (the upload holds exactly its length and no longer takes an unfinished
place).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

from .. import errors
from ..access import quotas
from ..events import hooks
from ..storage.store import StoreError, UploadInfo
from .context import current_settings, current_store, current_usage

log = logging.getLogger("tus_server.finish")


def ask(info: UploadInfo, length: Optional[int] = None) -> None:
    """pre-finish for `info` as it will be once finished (at `length`, if it is declared now).
    A veto raises, before anything is changed."""
    length = info.length if length is None else length
    hooks.emit("pre-finish", replace(info, length=length, offset=length, completed=True))


def settle(was_completed: bool, info: UploadInfo, asked: bool) -> UploadInfo:
    """After a store verb that may have finished the upload (`info`, as stored after it)."""
    if was_completed or not info.completed:
        return info
    if not asked:
        try:
            hooks.emit("pre-finish", info)
        except errors.TusError:
            current_store().terminate(info.id)
            hooks.terminated(info, "pre-finish refused")
            raise
    hooks.finished(info)
    try:
        quotas.finished(current_usage(), info)
    except StoreError as exc:  # it only over-counts the owner until the next recount
        log.warning("usage record not updated after upload_id=%s finished: %s", info.id, exc)
    return info


def declare_length(info: UploadInfo, length: int) -> UploadInfo:
    """Fix a deferred upload's length: its quota first (413), then pre-finish when the length
    is the offset (the declaration finishes it), then the store."""
    store, usage = current_store(), current_usage()
    held = quotas.reserve_length(usage, store, current_settings(), info, length)
    finishing = length == info.offset
    try:
        if finishing:
            ask(info, length)
        declared = store.declare_length(info.id, length)
    except BaseException:
        quotas.unreserve_length(usage, info, held)
        raise
    return settle(info.completed, declared, asked=finishing)


def created(info: UploadInfo) -> UploadInfo:
    """After a creation: an upload created finished (empty, or a final) has finished."""
    return settle(False, info, asked=True)
