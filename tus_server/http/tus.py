"""The tus 1.0.0 blueprint: headers in, status codes out. Storage only through `Store`.

Extensions: creation, creation-with-upload, creation-defer-length, termination, expiration,
checksum, concatenation. Store errors are turned into HTTP outcomes by the app's handlers.
"""
from __future__ import annotations

import time
from typing import Optional
from urllib.parse import urlparse

from flask import Blueprint, Response, request, url_for

from .. import errors
from ..access import auth, quotas
from ..config import Settings
from ..events import hooks
from ..storage.store import (
    ChecksumMismatch,
    StoreError,
    UploadInfo,
    UploadNotFound,
    WriteResult,
    is_upload_id,
    new_upload_id,
)
from . import finish
from .body import RequestBody
from .checksums import ALGORITHMS, parse_upload_checksum
from .context import current_settings, current_store, current_usage, load_upload, upload_url
from .downloads import download_response
from .headers import (
    encode_metadata,
    http_date,
    metadata_text,
    parse_metadata,
    parse_uint,
    safe_filename,
    type_allowed,
)

TUS_VERSION = errors.TUS_VERSION
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination",
              "expiration", "checksum", "concatenation")
OFFSET_STREAM = "application/offset+octet-stream"
TUS_METHODS = ("POST", "HEAD", "PATCH", "DELETE")

bp = Blueprint("tus", __name__)


@bp.before_request
def require_tus_version():
    """Every tus request needs `Tus-Resumable: 1.0.0`; OPTIONS and plain GETs do not, nor a
    plain HEAD (`head` decides what that one gets)."""
    if request.method == "HEAD" and "Tus-Resumable" not in request.headers:
        return None
    if request.method in TUS_METHODS and request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise errors.VersionMismatch(
            "Tus-Resumable: 1.0.0 is required" if "Tus-Resumable" not in request.headers
            else f"Tus-Resumable {request.headers['Tus-Resumable'][:20]!r} is not supported; "
                 "this server speaks 1.0.0")


@bp.after_request
def tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


def _content_length() -> Optional[int]:
    return parse_uint("Content-Length", request.headers.get("Content-Length"))


def _has_body() -> bool:
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return True
    return bool(_content_length())


def _is_offset_stream() -> bool:
    return request.mimetype == OFFSET_STREAM


def _limit_headers() -> dict:
    settings = current_settings()
    headers = {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Checksum-Algorithm": ",".join(ALGORITHMS),
    }
    if settings.max_size:
        headers["Tus-Max-Size"] = str(settings.max_size)
    return headers


@bp.route("/files", methods=["OPTIONS"], provide_automatic_options=False)
@bp.route("/files/", methods=["OPTIONS"], provide_automatic_options=False)
@bp.route("/files/<upload_id>", methods=["OPTIONS"], provide_automatic_options=False,
          endpoint="upload_options")
def options(upload_id: Optional[str] = None):
    response = Response(status=204)
    response.headers.update(_limit_headers())
    return response


# ---------------------------------------------------------------------------- creation
def _parse_concat(raw: Optional[str], max_partials: int) -> tuple[Optional[str], list[str]]:
    """`partial` or `final;<url> <url>` -> (role, partial ids).

    Each partial is read from the store at creation, so their number is capped; a partial
    named twice is refused: it is almost always a client bug, and it lets one small upload
    count many times towards the final size.
    """
    if raw is None:
        return None, []
    raw = raw.strip()
    if raw == "partial":
        return "partial", []
    if not raw.startswith("final;"):
        raise errors.BadRequest("Upload-Concat must be 'partial' or 'final;<url> <url> ...'")
    ids = []
    for url in raw[len("final;"):].split():
        # Absolute or relative, possibly below a proxy's prefix: `.../files/<id>`.
        segments = urlparse(url).path.strip("/").split("/")
        if len(segments) < 2 or segments[-2] != "files" or not is_upload_id(segments[-1]):
            raise errors.BadRequest(f"Upload-Concat names {url[:80]!r}, which is not an upload URL")
        if segments[-1] in ids:
            raise errors.BadRequest(f"Upload-Concat names partial upload {segments[-1]} twice")
        ids.append(segments[-1])
        if len(ids) > max_partials:
            raise errors.BadRequest(f"Upload-Concat names more than {max_partials} partial "
                                    "uploads (TUS_MAX_PARTIALS)")
    if not ids:
        raise errors.BadRequest("Upload-Concat: final needs at least one partial upload URL")
    return "final", ids


def _check_file_rules(metadata: dict, settings: Settings) -> None:
    name = metadata_text(metadata, "filename") or metadata_text(metadata, "name")
    if settings.require_filename and not name:
        raise errors.BadRequest("a filename is required in Upload-Metadata (TUS_REQUIRE_FILENAME)")
    if settings.allowed_types:
        file_type = metadata_text(metadata, "filetype") or metadata_text(metadata, "type")
        if not type_allowed(file_type, settings.allowed_types):
            raise errors.UnsupportedMediaType(
                f"file type {file_type or 'unknown'!r} is not allowed "
                f"(TUS_ALLOWED_TYPES={','.join(settings.allowed_types)})")


@bp.route("/files", methods=["POST"])
@bp.route("/files/", methods=["POST"])
def create():
    settings = current_settings()
    store = current_store()
    caller = auth.current_caller()
    auth.authorize(caller, auth.CREATE)
    length = parse_uint("Upload-Length", request.headers.get("Upload-Length"))
    defer = request.headers.get("Upload-Defer-Length")
    if defer is not None and defer.strip() != "1":
        raise errors.BadRequest("Upload-Defer-Length must be 1")
    concat, partial_ids = _parse_concat(request.headers.get("Upload-Concat"), settings.max_partials)
    metadata = parse_metadata(request.headers.get("Upload-Metadata"), settings.max_metadata_size)
    _check_file_rules(metadata, settings)

    if concat == "final":
        if length is not None or defer is not None:
            raise errors.BadRequest("a final upload takes its length from its partial uploads")
        if _has_body():
            raise errors.Forbidden("a final upload cannot carry a body")
        length = _final_length(partial_ids)
    elif length is None and defer is None:
        raise errors.BadRequest("Upload-Length or Upload-Defer-Length: 1 is required")
    elif length is not None and defer is not None:
        raise errors.BadRequest("send Upload-Length or Upload-Defer-Length, not both")
    if length is not None and settings.max_size and length > settings.max_size:
        raise errors.PayloadTooLarge(
            f"Upload-Length {length} is larger than Tus-Max-Size {settings.max_size}")
    with_body = _has_body() and concat != "final"
    if with_body:
        _check_creation_body(length, settings)
    owner = auth.owner_of_new_upload(caller)

    now = time.time()
    info = UploadInfo(
        id=new_upload_id(),
        length=length,
        chunk_size=settings.chunk_size,
        metadata=metadata,
        filename=safe_filename(metadata_text(metadata, "filename") or metadata_text(metadata, "name")),
        created=now,
        updated=now,
        # A zero-length upload is finished at once; it expires like an unfinished one (see
        # `_expires_at`), or anyone could fill the storage with empty uploads kept forever.
        expires=_expires_at(now, length, concat, settings),
        concat=concat,
        partials=partial_ids,
        owner=owner,
    )
    if concat == "final":
        info.offset = length
        info.completed = True
    info = create_upload(info)
    if concat == "final" and length:
        store.schedule_digest(info.id)

    response = Response(status=201)
    response.headers["Location"] = upload_url(info.id)
    if with_body:
        info = _write_body(info, 0)
        response.headers["Upload-Offset"] = str(info.offset)
    else:
        info = finish.created(info)
    if info.expires and not info.completed:
        response.headers["Upload-Expires"] = http_date(info.expires)
    return response


def create_upload(info: UploadInfo) -> UploadInfo:
    """Both protocols' creation: the owner's quota first (429 or 413, before any hook), then
    pre-create (which may change the id), pre-finish for an upload finished at once (empty, or
    a final), the concatenation index, the store, post-create. A refusal gives the reservation
    back."""
    usage, store = current_usage(), current_store()
    quotas.reserve_new_upload(usage, store, current_settings(), info)
    try:
        chosen = hooks.pre_create(info)
        if chosen.id != info.id:
            quotas.rename(usage, info, chosen)
        info = chosen
        if info.length == 0 or info.completed:
            finish.ask(info)
        if info.concat == "final" and usage is not None:
            usage.finals.link(info.id, info.partials)
        info = store.create(info)
    except BaseException:
        quotas.release(usage, info)
        raise
    hooks.created(info)
    return info


def _check_creation_body(length: Optional[int], settings: Settings) -> None:
    """Refuse a creation body that cannot be stored before anything is created, so a refused
    request leaves no upload behind."""
    if not _is_offset_stream():
        raise errors.UnsupportedMediaType(
            "a creation body needs Content-Type: application/offset+octet-stream")
    content_length = _content_length() or 0
    if length is not None and content_length > length:
        raise errors.PayloadTooLarge("the body is longer than Upload-Length")
    if length is None and settings.max_size and content_length > settings.max_size:
        raise errors.PayloadTooLarge(f"the body is longer than Tus-Max-Size {settings.max_size}")
    parse_upload_checksum(request.headers.get("Upload-Checksum"))  # 400 if malformed


def _expires_at(now: float, length: Optional[int], concat: Optional[str],
                settings: Settings) -> Optional[float]:
    """Unfinished uploads expire after TUS_EXPIRATION; so do zero-length ones (plain or
    final), which are finished at creation without a byte received. A final upload with
    bytes is a finished file, kept like any other (TUS_RETENTION)."""
    if not settings.expiration or (concat == "final" and length):
        return None
    return now + settings.expiration


def _final_length(partial_ids: list[str]) -> int:
    total = 0
    for partial_id in partial_ids:
        try:
            partial = load_upload(partial_id, auth.CONCAT)
        except (errors.NotFound, UploadNotFound):  # the store raises the latter
            raise errors.BadRequest(f"partial upload {partial_id} does not exist") from None
        if partial.concat != "partial":
            raise errors.BadRequest(f"upload {partial_id} is not a partial upload")
        if not partial.completed:
            raise errors.BadRequest(f"partial upload {partial_id} is not finished "
                                    f"({partial.offset} of {partial.length} bytes)")
        total += partial.length or 0
    settings = current_settings()
    if settings.max_size and total > settings.max_size:
        raise errors.PayloadTooLarge(f"the partial uploads add up to {total} bytes, "
                                     f"more than Tus-Max-Size {settings.max_size}")
    return total


def _write_body(info: UploadInfo, offset: int) -> UploadInfo:
    """Store the body; the upload as stored after it."""
    return write_body_result(info, offset)[0]


def write_body_result(info: UploadInfo, offset: int,
                      verifier=None) -> tuple[UploadInfo, WriteResult]:
    """Store the body (checked by `verifier`, by default the tus `Upload-Checksum` if any);
    the hooks see a body that will finish the upload before it is stored when its length is
    announced (hooks.py explains pre-finish), and the result after."""
    settings, store = current_settings(), current_store()
    if verifier is None:
        verifier = parse_upload_checksum(request.headers.get("Upload-Checksum"))
    content_length = _content_length()
    will_finish = info.length is not None and content_length is not None \
        and offset + content_length == info.length
    if will_finish:
        finish.ask(info)
    # A deferred upload's bytes are reserved before they are read (413 here, body unread).
    meter = quotas.body_meter(current_usage(), store, settings, info, offset, content_length)
    body = RequestBody(request.environ, content_length, settings.body_timeout)
    source = meter(body) if meter else body
    stream = hooks.hooks().watch(info, offset, source)
    try:
        result = store.write(info.id, offset, stream, content_length, verifier=verifier,
                             limit=settings.max_size or None, known=info)
    except StoreError as error:
        # A body cut at the quota cannot be checked: the quota is why.
        if isinstance(error, ChecksumMismatch) and getattr(source, "refused", False):
            raise quotas.over_quota(settings, offset) from None
        if body.malformed:  # the cause of whatever the store made of the cut-short body
            raise errors.BadRequest(f"malformed chunked body ({body.malformed})") from None
        raise
    finally:
        body.close()
    hooks.written(info, stream, result)
    if getattr(source, "refused", False):
        raise quotas.over_quota(settings, result.info.offset)
    settled = finish.settle(info.completed, result.info, asked=will_finish)
    if body.malformed:
        raise errors.BadRequest(f"malformed chunked body ({body.malformed}); the bytes before "
                                f"it are stored, up to offset {settled.offset}")
    if body.timed_out:
        raise errors.BodyReadTimeout(
            f"no body bytes for {settings.body_timeout:g} s; stored up to offset {settled.offset}")
    return settled, result


# ---------------------------------------------------------------------------- an upload
def _concat_header(info: UploadInfo) -> Optional[str]:
    if info.concat == "partial":
        return "partial"
    if info.concat == "final":
        return "final;" + " ".join(url_for("tus.upload", upload_id=p) for p in info.partials)
    return None


@bp.route("/files/<upload_id>", methods=["HEAD"], endpoint="upload")
def head(upload_id: str):
    if "Tus-Resumable" not in request.headers:
        return _plain_head(upload_id)
    # A PATCH still running on this upload is asked to hand over first, so the offset
    # includes every byte it received (a resuming client must not start too early).
    info = load_upload(upload_id, auth.STATUS, settle_writer=True)
    response = Response(status=200)
    headers = response.headers
    headers["Cache-Control"] = "no-store"
    if info.concat != "final" or info.completed:
        headers["Upload-Offset"] = str(info.offset)
    if info.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(info.length)
    if info.metadata:
        headers["Upload-Metadata"] = encode_metadata(info.metadata)
    if info.expires and not info.completed:
        headers["Upload-Expires"] = http_date(info.expires)
    concat = _concat_header(info)
    if concat:
        headers["Upload-Concat"] = concat
    # Werkzeug would compute Content-Length 0 for HEAD; tus says it describes the upload.
    response.headers["Content-Length"] = "0"
    return response


def _plain_head(upload_id: str) -> Response:
    """HEAD without `Tus-Resumable` (curl -I, wget --spider, link checkers) asks about the
    download, so a finished file gets GET's headers (Content-Length of the file, Content-Type,
    ETag, Accept-Ranges). Anything else is not a file yet: it stays the tus answer, 412."""
    info = load_upload(upload_id, auth.DOWNLOAD)
    if not info.completed or info.concat == "partial":
        raise errors.VersionMismatch("Tus-Resumable: 1.0.0 is required (a HEAD without it "
                                     "describes a finished file, and this upload is not one)")
    return download_response(info)


@bp.route("/files/<upload_id>", methods=["PATCH"])
def patch(upload_id: str):
    if not is_upload_id(upload_id):
        raise errors.NotFound(f"upload {upload_id[:80]!r} not found")
    if not _is_offset_stream():
        raise errors.UnsupportedMediaType()
    offset = parse_uint("Upload-Offset", request.headers.get("Upload-Offset"))
    if offset is None:
        raise errors.BadRequest("Upload-Offset is required")
    new_length = parse_uint("Upload-Length", request.headers.get("Upload-Length"))
    content_length = _content_length()
    info = load_upload(upload_id, auth.WRITE)
    if info.concat == "final":
        raise errors.Forbidden("a final upload cannot be patched")
    if offset != info.offset:
        raise errors.Conflict(f"Upload-Offset {offset} does not match the stored offset {info.offset}")

    settings = current_settings()
    if new_length is not None:
        if info.length is None:
            if settings.max_size and new_length > settings.max_size:
                raise errors.PayloadTooLarge(
                    f"Upload-Length {new_length} is larger than Tus-Max-Size {settings.max_size}")
            info = finish.declare_length(info, new_length)
        elif new_length != info.length:
            raise errors.BadRequest(f"Upload-Length is already {info.length} and cannot change")
    if info.length is not None and content_length is not None \
            and offset + content_length > info.length:
        raise errors.PayloadTooLarge(
            f"{content_length} bytes at offset {offset} would pass Upload-Length {info.length}")
    if info.length is None and settings.max_size and content_length is not None \
            and offset + content_length > settings.max_size:
        raise errors.PayloadTooLarge(
            f"{content_length} bytes at offset {offset} would pass Tus-Max-Size {settings.max_size}")

    if _has_body():
        info = _write_body(info, offset)
    response = Response(status=204)
    response.headers["Upload-Offset"] = str(info.offset)
    if info.expires and not info.completed:
        response.headers["Upload-Expires"] = http_date(info.expires)
    return response


@bp.route("/files/<upload_id>", methods=["DELETE"])
def delete(upload_id: str):
    info = load_upload(upload_id, auth.DELETE, allow_expired=True)
    usage = current_usage()
    if info.concat == "partial" and usage is not None:
        # A final reads its partials' chunks (it has none of its own): the partial stays.
        finals = usage.finals.finals_of(info.id, current_store())
        if finals:
            raise errors.Conflict(f"partial upload {upload_id} is part of {len(finals)} final "
                                  "upload(s) (concatenation); delete those first")
    hooks.emit("pre-terminate", info)
    current_store().terminate(upload_id)
    hooks.terminated(info)
    return Response(status=204)
