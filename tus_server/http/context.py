"""What the blueprints share about the request in hand: the app's settings and store, upload
URLs, and loading an upload the caller may act on (`load_upload`). Kept apart so that the tus
blueprint, downloads, listing and the IETF draft all import it, and none imports another."""
from __future__ import annotations

import time
from typing import Optional

from flask import current_app, url_for

from .. import errors
from ..access import auth
from ..config import Settings
from ..storage.store import Store, UploadInfo, UploadNotFound, is_upload_id
from ..storage.usage import Usage
from .headers import http_date


def current_settings() -> Settings:
    return current_app.config["TUS_SETTINGS"]


def current_store() -> Store:
    return current_app.config["TUS_STORE"]


def current_usage() -> Optional[Usage]:
    """The per-owner usage records and concatenation index (None with a store of another kind)."""
    return current_app.extensions.get("tus_usage")


def upload_url(upload_id: str) -> str:
    return url_for("tus.upload", upload_id=upload_id, _external=True)


def load_upload(upload_id: str, action: str, allow_expired: bool = False,
                settle_writer: bool = False) -> UploadInfo:
    """The upload's info if the caller may do `action` to it (`auth.authorize`), or 404 for an
    id that cannot exist or belongs to someone else, or 410 once it expired.

    The caller is authorized before anything else reveals or touches the upload: a foreign
    upload's expiry must not show, and a HEAD must not make its owner's PATCH hand over.
    """
    if not is_upload_id(upload_id):
        raise errors.NotFound(f"upload {upload_id[:80]!r} not found")
    caller = auth.current_caller()
    info = current_store().get(upload_id, settle_writer=settle_writer and caller.open)
    auth.authorize(caller, action, info)
    if settle_writer and not caller.open:
        info = current_store().get(upload_id, settle_writer=True)
    if not allow_expired and not info.completed and info.expires and info.expires < time.time():
        raise errors.Gone(f"upload {upload_id} expired at {http_date(info.expires)}")
    if not allow_expired and info.concat == "final":
        _check_partials(info)
    return info


def _check_partials(info: UploadInfo) -> None:
    """A final upload whose partials are gone (retired, removed behind the server's back) can
    never be read again: it expires now (410), rather than answering HEAD as complete forever."""
    store = current_store()
    for partial_id in info.partials:
        try:
            store.get(partial_id)
        except UploadNotFound:
            try:
                store.terminate(info.id)
            except UploadNotFound:
                pass
            raise errors.Gone(f"upload {info.id} expired: its partial upload {partial_id} is "
                              "gone") from None
