"""GET of finished uploads: streamed from the chunk objects, Range-aware, digest-carrying.

Multiple ranges in one request (`bytes=0-1,5-9`) are answered with the whole file (200), which
RFC 9110 allows; single ranges get 206. Nothing is assembled in memory or on disk: the store
yields the file chunk by chunk and each whole chunk is verified against its recorded CRC32C; a
chunk that cannot be read (after the reader's retries) or fails verification mid-body closes
the connection with one log line.
"""
from __future__ import annotations

import itertools
import logging
import socket
import unicodedata
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import ContentRange
from werkzeug.http import http_date as werkzeug_http_date
from werkzeug.http import parse_etags, parse_if_range_header

from .. import errors
from ..access import auth
from ..storage.store import StorageUnavailable, StoredDataCorrupt, StoreError, UploadInfo
from .context import load_upload
from .headers import content_type_of, metadata_text, repr_digest, safe_filename

bp = Blueprint("downloads", __name__)
log = logging.getLogger("tus_server.downloads")


def etag_of(info: UploadInfo) -> str:
    """A finished upload never changes, so its id and length identify its bytes."""
    return f"{info.id[4:]}-{info.length:x}"


def _download_name(info: UploadInfo) -> str:
    return info.filename or "upload"


def _content_disposition_options(name: str) -> dict:
    """ASCII `filename` plus RFC 5987 `filename*` for other names, as Werkzeug's send_file does."""
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        if not folded.rsplit(".", 1)[0].strip():  # only an extension survived: `данные.bin`
            folded = "download" + (folded.strip() if folded.startswith(".") else "")
        # Reduced again after folding: `．．／．．／x` (fullwidth) folds to `../../x`.
        simple = safe_filename(folded, "download")
        return {"filename": simple, "filename*": "UTF-8''" + quote(name, safe="!#$&+^`|~")}
    return {"filename": name}


def _unfinished_fallback(info: UploadInfo) -> bool:
    """The newest state could not be read (a node rejoining) and an older one says
    unfinished."""
    return not info.completed and (info.version or 0) < (info.seen or 0)


@bp.route("/files/<upload_id>", methods=["GET"])
def download(upload_id: str):
    return download_response(load_upload(upload_id, auth.DOWNLOAD))


def download_response(info: UploadInfo) -> Response:
    """The file as GET serves it; for HEAD the same headers without reading a chunk."""
    upload_id = info.id
    if info.concat == "partial":
        raise errors.Forbidden("a partial upload is not a file; download its final upload")
    if _unfinished_fallback(info):
        # Ask MinIO again, past what this process marked unreadable; still so, that is a
        # degraded store, not an answer about the file.
        info = current_app.config["TUS_STORE"].get(upload_id, patient=True)
        if _unfinished_fallback(info):
            raise StorageUnavailable(f"the newest state of upload {upload_id} cannot be read")
    if not info.completed:
        raise errors.Conflict(
            f"upload {upload_id} is not finished: {info.offset} of "
            f"{'an unknown number of' if info.length is None else info.length} bytes received")
    store = current_app.config["TUS_STORE"]
    size = info.length or 0
    etag = etag_of(info)

    response = Response(status=200, direct_passthrough=True)
    headers = response.headers
    file_type = content_type_of(metadata_text(info.metadata, "filetype"))
    headers["Content-Type"] = file_type or "application/octet-stream"
    headers.set("Content-Disposition", "attachment", **_content_disposition_options(_download_name(info)))
    headers["Accept-Ranges"] = "bytes"
    headers["X-Content-Type-Options"] = "nosniff"
    # The bytes are whatever a client uploaded: opened in a browser (a `text/html` filetype,
    # say) they run in a sandbox with no access to this origin.
    headers["Content-Security-Policy"] = "sandbox"
    headers["Cache-Control"] = "private, no-cache"
    response.set_etag(etag)
    headers["Last-Modified"] = werkzeug_http_date(info.updated)
    if info.sha256:
        headers["Repr-Digest"] = repr_digest(info.sha256)
    else:
        store.schedule_digest(upload_id)

    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and parse_etags(if_none_match).contains_weak(etag):
        response.status_code = 304
        response.response = []
        headers.remove("Content-Type")
        return response

    start, end = 0, size
    rng = request.range
    if rng is not None and _if_range_holds(etag, info):
        if len(rng.ranges) == 1:
            span = rng.range_for_length(size)
            first, last = rng.ranges[0]
            if span is None and first < 0 and last is None and size > 0:
                # RFC 9110 14.1.3: a suffix longer than the file selects all of it (Werkzeug
                # calls it unsatisfiable).
                span = (0, size)
            if span is None:
                raise errors.RangeNotSatisfiable(
                    f"range {request.headers.get('Range')!r} is outside the {size} bytes of this file",
                    headers={"Content-Range": f"bytes */{size}"})
            start, end = span
            response.status_code = 206
            headers["Content-Range"] = ContentRange("bytes", start, end, size).to_header()
    headers["Content-Length"] = str(end - start)
    if end > start and request.method != "HEAD":
        response.response = _verified_stream(store, info, start, end)
    else:
        response.response = []
    return response


def _if_range_holds(etag: str, info: UploadInfo) -> bool:
    """RFC 9110 If-Range: serve the range only while the validator still matches; an ETag is
    compared strongly, a date must equal Last-Modified exactly."""
    raw = request.headers.get("If-Range")
    if raw is None:
        return True
    if raw.strip().startswith("W/"):  # a weak tag never validates a range (RFC 9110 13.1.5);
        return False  # Werkzeug's parser drops the weakness, so check it here
    parsed = parse_if_range_header(raw)
    if parsed.etag is not None:
        return parsed.etag == etag
    if parsed.date is not None:
        return int(parsed.date.timestamp()) == int(info.updated)
    return False


def _verified_stream(store, info: UploadInfo, start: int, end: int):
    """The chunk stream, with the first chunk read (and verified) before headers go out, so a
    bad first chunk is a clean 500 (unreadable: 503); a later one cuts the response off."""
    chunks = iter(store.open(info.id, start, end, info))
    try:
        first = next(chunks)
    except StoredDataCorrupt as exc:
        raise errors.InternalError(f"stored data of upload {info.id} failed verification "
                                   f"(chunk {exc.chunk_index})") from exc
    connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    return _cut_off_on_fault(itertools.chain([first], chunks), info, start, connection)


def _cut_off_on_fault(chunks, info: UploadInfo, start: int, connection):
    """Stream the chunks; when one fails (after the reader's retries), say so in one log line
    and close the connection, so the client sees a short body, not a complete-looking one.
    The WSGI server sees the stream end (no traceback in its log)."""
    sent = start
    try:
        for piece in chunks:
            yield piece
            sent += len(piece)
    except StoredDataCorrupt as exc:
        log.error("download cut off: upload_id=%s chunk=%d failed verification",
                  info.id, exc.chunk_index)
    except StoreError as exc:
        log.error("download cut off: upload_id=%s at byte %d: %s", info.id, sent, exc)
    else:
        return
    if connection is None:
        raise ConnectionAbortedError("download cut off")  # a server we cannot close under
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:  # the client left already
        pass
