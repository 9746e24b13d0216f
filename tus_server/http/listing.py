"""`GET /files`: the uploads a caller may see, newest first, paginated, as JSON.

Registered on the tus blueprint (endpoint `tus.list_uploads`). With access control on, a
caller who is not an admin sees only their own uploads, and each finished file comes with a
signed download link (`links.py`) a browser can follow without a header.
"""
from __future__ import annotations

import time
from typing import Optional

from flask import jsonify, request, url_for

from .. import errors
from ..access import auth
from ..storage.store import UploadInfo, UploadNotFound
from .context import current_settings, current_store, current_usage, upload_url
from .headers import metadata_text, parse_uint
from .tus import bp


def _download_url(info: UploadInfo) -> Optional[str]:
    if not info.completed or info.concat == "partial":
        return None
    query = auth.download_query(current_settings(), auth.current_caller(), info.id)
    return upload_url(info.id) + ("?" + query if query else "")


def upload_summary(info: UploadInfo) -> dict:
    def iso(ts: Optional[float]) -> Optional[str]:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None

    return {
        "id": info.id,
        # The sanitized name the download's Content-Disposition and the chunk keys use, so the
        # list never shows a name (`../x`, control characters) that the file will not have.
        "filename": info.filename,
        "filetype": metadata_text(info.metadata, "filetype"),
        "size": info.length,
        "offset": info.offset,
        "completed": info.completed,
        "created": iso(info.created),
        # Finished uploads have none, except zero-length ones (`protocol._expires_at`).
        "expires": iso(info.expires),
        "concat": info.concat,
        "sha256": info.sha256,
        "url": upload_url(info.id),
        "download_url": _download_url(info),
    }


def _infos(ids: list[str]) -> list[UploadInfo]:
    infos = []
    for upload_id in ids:
        try:
            infos.append(current_store().get(upload_id))
        except UploadNotFound:  # terminated while we listed
            continue
    return infos


def _owned_ids(owner: str) -> list[str]:
    """The caller's upload ids, newest first: from the owner's index, or (a store without
    one) from every stored upload's info."""
    usage = current_usage()
    if usage is not None:
        return usage.newest_first(owner)
    return [info.id for info in _infos(current_store().list_ids()) if info.owner == owner]


@bp.route("/files", methods=["GET"])
@bp.route("/files/", methods=["GET"])
def list_uploads():
    """Uploads newest first, `per_page` at a time (default 50, at most 500).

    The first page and the `next` links (`?after=<cursor>`) cost one info read per listed
    upload and, in the prefix layout, a listing only as long as the page, whatever the number
    stored; `?page=N` still works but counts every upload (`total`). A caller restricted to
    their own uploads lists their index (storage/usage.py: one marker object per upload, one
    LIST per 1,000) and reads one info per listed upload, whatever other owners store.
    """
    per_page = min(max(parse_uint("per_page", request.args.get("per_page", "50")) or 50, 1), 500)
    after = request.args.get("after")
    if after is not None and not (0 < len(after) <= 200 and after.isprintable()):
        raise errors.BadRequest("after must be the cursor of a `next` link")
    caller = auth.current_caller()
    auth.authorize(caller, auth.LIST)
    page = parse_uint("page", request.args.get("page")) if "page" in request.args else None
    if caller.admin and page is None:
        ids, cursor = current_store().list_page(after, per_page)
        response = jsonify({
            "uploads": [upload_summary(info) for info in _infos(ids)],
            "per_page": per_page,
            "next": url_for("tus.list_uploads", after=cursor, per_page=per_page,
                            _external=True) if cursor else None,
        })
        response.headers["Cache-Control"] = "no-store"
        return response
    page = page or 1
    if caller.admin:
        ids = current_store().list_ids()
        total = len(ids)
        infos = _infos(ids[(page - 1) * per_page: page * per_page])
    else:
        # An id in the index whose info is gone (a creation in progress, a removal under
        # way) is left out of the page.
        owned = _owned_ids(caller.sub)
        total = len(owned)
        infos = [info for info in _infos(owned[(page - 1) * per_page: page * per_page])
                 if auth.may_see(caller, info)]
    has_next = page * per_page < total
    response = jsonify({
        "uploads": [upload_summary(info) for info in infos],
        "page": page,
        "per_page": per_page,
        "total": total,
        "next": url_for("tus.list_uploads", page=page + 1, per_page=per_page, _external=True)
        if has_next else None,
    })
    # The list changes with every request and names uploads: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response
