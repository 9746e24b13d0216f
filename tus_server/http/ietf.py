"""The IETF draft "Resumable Uploads for HTTP" on the same `/files` uploads as tus 1.0.

A request that carries `Upload-Draft-Interop-Version` speaks the draft (as in tusd); one with
`Tus-Resumable` speaks tus 1.0. Both reach the same `Store`: an upload created with either is
the same object (chunks, lock, digest, expiration, download, listing).

    POST   /files        creation: `Upload-Complete: ?0|?1`, optional `Upload-Length`, a body
    HEAD   /files/<id>   offset retrieval: `Upload-Offset`, `Upload-Complete`, `Upload-Limit`
    PATCH  /files/<id>   append: `application/partial-upload`, `Upload-Offset`, `Upload-Complete`
    DELETE /files/<id>   cancellation
    OPTIONS /files       `Upload-Limit`

Interop versions: 5 and 6 (what tus-js-client 4.3.1 sends for `ietf-draft-03` and
`ietf-draft-05`) and 8 (the draft in shared/specs). Their server side differs in one point we
honour: from 6 on, an append must say `Content-Type: application/partial-upload`.

Not possible here: the `104 (Upload Resumption Supported)` interim response (WSGI cannot send
one), so a client learns the upload URL from the 201 of a creation; every browser and
tus-js-client work that way anyway. Since the store finishes an upload when its offset reaches
a known length, `Upload-Length` is taken as the client's promise: reaching it completes the
upload even before a request says `Upload-Complete: ?1`.
"""
from __future__ import annotations

import base64
import json
import time
from typing import Optional

import http_sf
from flask import Flask, Response, current_app, request
from werkzeug.http import parse_options_header

from .. import errors
from ..access import auth
from ..storage.store import ChecksumMismatch, OffsetMismatch, UploadInfo, new_upload_id
from . import finish
from .checksums import ChecksumVerifier
from .context import load_upload, upload_url
from .headers import metadata_text, parse_metadata, repr_digest, safe_filename
from .tus import _check_file_rules, _content_length, _has_body, create_upload
from .tus import delete as terminate
from .tus import write_body_result

SUPPORTED = (5, 6, 8)
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
PROBLEM_LENGTH = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
DIGESTS = {"sha-256": "sha256", "sha-512": "sha512"}


def install(app: Flask) -> None:
    app.before_request(dispatch)


def dispatch() -> Optional[Response]:
    """Answer a draft request here; tus 1.0 and plain requests go on to their routes."""
    raw = request.headers.get("Upload-Draft-Interop-Version")
    rule = request.url_rule.rule if request.url_rule is not None else ""
    if raw is None or not rule.startswith("/files"):
        return None
    version = _item(raw)
    if version not in SUPPORTED or isinstance(version, bool):
        raise errors.BadRequest(
            f"Upload-Draft-Interop-Version {raw[:20]!r} is not supported; this server speaks "
            + ", ".join(map(str, SUPPORTED)))
    upload_id = (request.view_args or {}).get("upload_id")
    if request.method == "OPTIONS":
        return _answer(204, limits=_limits(None))
    if upload_id is None:
        return create() if request.method == "POST" else None
    if request.method == "HEAD":
        return offset_retrieval(upload_id)
    if request.method == "PATCH":
        return append(upload_id, version)
    if request.method == "DELETE":
        return terminate(upload_id)  # tus's termination: the same hooks, the same answer
    return None


# ----------------------------------------------------------------------------- headers
def _item(raw: Optional[str]):
    """A Structured Field item's value, or None when absent or malformed (then ignored)."""
    if raw is None:
        return None
    try:
        return http_sf.parse(raw.encode("latin-1"), tltype="item")[0]
    except Exception:  # the draft: other values cause the field to be ignored
        return None


def _integer(name: str) -> Optional[int]:
    value = _item(request.headers.get(name))
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _complete_flag() -> bool:
    value = _item(request.headers.get("Upload-Complete"))
    if not isinstance(value, bool):
        raise errors.BadRequest("Upload-Complete (?0 or ?1) is required")
    return value


def _limits(info: Optional[UploadInfo]) -> str:
    settings = current_app.config["TUS_SETTINGS"]
    limits: dict = {}
    if settings.max_size:
        limits["max-size"] = settings.max_size
    if info is not None and info.expires and not info.completed:
        limits["max-age"] = max(0, int(info.expires - time.time()))
    return http_sf.ser(limits or {"min-size": 0})


def _answer(status: int, info: Optional[UploadInfo] = None, limits: Optional[str] = None,
            **headers) -> Response:
    response = Response(status=status)
    if info is not None:
        response.headers["Upload-Offset"] = str(info.offset)
        response.headers["Upload-Complete"] = "?1" if info.completed else "?0"
        if info.length is not None:
            response.headers["Upload-Length"] = str(info.length)
        if info.sha256:
            response.headers["Repr-Digest"] = repr_digest(info.sha256)
    if limits:
        response.headers["Upload-Limit"] = limits
    response.headers.update(headers)
    return response


def _problem(status: int, kind: str, title: str, offset: Optional[int] = None,
             **members) -> Response:
    """An RFC 9457 problem-details answer with the draft's headers."""
    body = {"type": kind, "title": title, **members}
    response = Response(json.dumps(body) + "\n", status=status,
                        mimetype="application/problem+json")
    response.headers["Upload-Complete"] = "?0"
    if offset is not None:
        response.headers["Upload-Offset"] = str(offset)
    return response


def _content_digest() -> Optional[ChecksumVerifier]:
    """`Content-Digest: sha-256=:…:` (RFC 9530) checks this request's content as it streams."""
    raw = request.headers.get("Content-Digest")
    if raw is None:
        return None
    try:
        members = http_sf.parse(raw.encode("latin-1"), tltype="dictionary")
    except Exception:
        raise errors.BadRequest("Content-Digest is not a valid structured field") from None
    for name, algorithm in DIGESTS.items():
        value = members.get(name, (None,))[0]
        if isinstance(value, bytes):
            return ChecksumVerifier(algorithm, value)
    raise errors.BadRequest("Content-Digest names no supported algorithm (sha-256, sha-512)")


def _implied_length(offset: int, complete: bool, declared: Optional[int]) -> Optional[int]:
    """The length the request indicates, or raises if its indications disagree."""
    content_length = _content_length()
    implied = offset + content_length if complete and content_length is not None else None
    if declared is not None and implied is not None and declared != implied:
        raise _Inconsistent()
    return declared if declared is not None else implied


class _Inconsistent(Exception):
    pass


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ----------------------------------------------------------------------------- creation
def create() -> Response:
    settings = current_app.config["TUS_SETTINGS"]
    caller = auth.current_caller()
    auth.authorize(caller, auth.CREATE)
    complete = _complete_flag()
    try:
        length = _implied_length(0, complete, _integer("Upload-Length"))
    except _Inconsistent:
        return _problem(400, PROBLEM_LENGTH, "inconsistent length values for upload")
    if length is not None and settings.max_size and length > settings.max_size:
        raise errors.PayloadTooLarge(f"Upload-Length {length} is larger than the maximum size "
                                     f"{settings.max_size}", {"Upload-Limit": _limits(None)})
    metadata = parse_metadata(request.headers.get("Upload-Metadata"), settings.max_metadata_size)
    # Stored as tus stores metadata (base64 values), so both protocols read it alike.
    _, disposition = parse_options_header(request.headers.get("Content-Disposition", ""))
    if disposition.get("filename") and "filename" not in metadata:
        metadata["filename"] = _b64(disposition["filename"])
    if request.mimetype and request.mimetype != PARTIAL_UPLOAD and "filetype" not in metadata:
        metadata["filetype"] = _b64(request.mimetype)
    _check_file_rules(metadata, settings)
    verifier = _content_digest()
    owner = auth.owner_of_new_upload(caller)

    now = time.time()
    info = UploadInfo(
        id=new_upload_id(), length=length, chunk_size=settings.chunk_size, metadata=metadata,
        filename=safe_filename(metadata_text(metadata, "filename")
                               or metadata_text(metadata, "name")),
        created=now, updated=now,
        expires=now + settings.expiration if settings.expiration else None,
        protocol="ietf-draft", owner=owner)
    info = finish.created(create_upload(info))
    fully_received = True
    if _has_body():
        info, fully_received = _write(info, 0, verifier)
    info = _finish_if_complete(info, complete, fully_received)
    current_app.logger.info("created upload_id=%s length=%s filename=%r protocol=ietf-draft",
                            info.id, length, info.filename)
    return _answer(201, info, _limits(info), Location=upload_url(info.id))


# ----------------------------------------------------------------------------- an upload
def offset_retrieval(upload_id: str) -> Response:
    info = load_upload(upload_id, auth.STATUS, settle_writer=True)
    return _answer(204, info, _limits(info), **{"Cache-Control": "no-store"})


def append(upload_id: str, version: int) -> Response:
    if version >= 6 and request.mimetype != PARTIAL_UPLOAD:
        raise errors.UnsupportedMediaType(f"an append needs Content-Type: {PARTIAL_UPLOAD}")
    offset = _integer("Upload-Offset")
    if offset is None:
        raise errors.BadRequest("Upload-Offset is required")
    complete = _complete_flag()
    info = load_upload(upload_id, auth.WRITE)
    if info.concat == "final":
        raise errors.Forbidden("a final (concatenated) upload cannot be appended to")
    if offset != info.offset:
        return _mismatch(info.offset, offset)
    try:
        length = _implied_length(offset, complete, _integer("Upload-Length"))
        if info.length is not None and length not in (None, info.length):
            raise _Inconsistent()
    except _Inconsistent:
        return _problem(400, PROBLEM_LENGTH, "inconsistent length values for upload", info.offset)
    if info.completed:
        if complete and not _has_body():  # the final response was lost: say it again
            return _answer(204, info)
        raise errors.BadRequest("the upload is already complete")
    if info.length is None and length is not None:
        if length < info.offset:
            return _problem(400, PROBLEM_LENGTH, "the length is below the offset", info.offset)
        info = finish.declare_length(info, length)
    fully_received = True
    if _has_body():
        try:
            info, fully_received = _write(info, offset, _content_digest())
        except OffsetMismatch as exc:  # another request moved the offset meanwhile
            return _mismatch(exc.expected, offset)
    info = _finish_if_complete(info, complete, fully_received)
    return _answer(204, info)


def _mismatch(expected: int, provided: int) -> Response:
    return _problem(409, PROBLEM_OFFSET, "offset from request does not match offset of resource",
                    expected, **{"expected-offset": expected, "provided-offset": provided})


def _write(info: UploadInfo, offset: int,
           verifier: Optional[ChecksumVerifier]) -> tuple[UploadInfo, bool]:
    """Append the request content; (the upload after it, whether all content arrived)."""
    try:
        info, result = write_body_result(info, offset, verifier)
        return info, not result.interrupted
    except ChecksumMismatch:
        raise errors.BadRequest("Content-Digest does not match the content; none of it was "
                                "kept") from None


def _finish_if_complete(info: UploadInfo, complete: bool, fully_received: bool) -> UploadInfo:
    """`Upload-Complete: ?1` with the content fully processed fixes an unknown length at the
    offset (a known one completed the upload when the offset reached it), through the one
    finish path (quota, pre-finish, post-finish)."""
    if complete and fully_received and info.length is None:
        info = finish.declare_length(info, info.offset)
    return info
