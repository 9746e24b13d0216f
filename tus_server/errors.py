"""One exception type per HTTP outcome, rendered one way: status, short text, tus headers."""
from __future__ import annotations

import logging
from typing import Optional

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

TUS_VERSION = "1.0.0"
log = logging.getLogger("tus_server")


class TusError(Exception):
    status = 500
    reason = "Internal Server Error"
    message = "internal error"

    def __init__(self, message: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message or self.message)
        self.text = message or self.message
        self.headers = headers or {}


class BadRequest(TusError):
    status, reason, message = 400, "Bad Request", "bad request"


class MetadataTooLarge(BadRequest):
    message = "Upload-Metadata is too large"


class Unauthorized(TusError):
    """No usable token (RFC 6750): the `WWW-Authenticate` challenge is set by `auth.py`."""
    status, reason, message = 401, "Unauthorized", "a bearer token is required"


class Forbidden(TusError):
    status, reason, message = 403, "Forbidden", "not allowed on this upload"


class NotFound(TusError):
    status, reason, message = 404, "Not Found", "upload not found"


class MethodNotAllowed(TusError):
    status, reason, message = 405, "Method Not Allowed", "method not allowed"


class Conflict(TusError):
    status, reason, message = 409, "Conflict", "conflict"


class Gone(TusError):
    status, reason, message = 410, "Gone", "upload expired"


class VersionMismatch(TusError):
    status, reason, message = 412, "Precondition Failed", "Tus-Resumable 1.0.0 is required"

    def __init__(self, message: Optional[str] = None):
        super().__init__(message, {"Tus-Version": TUS_VERSION})


class PayloadTooLarge(TusError):
    status, reason, message = 413, "Request Entity Too Large", "upload too large"


class UnsupportedMediaType(TusError):
    status, reason, message = 415, "Unsupported Media Type", \
        "Content-Type must be application/offset+octet-stream"


class RangeNotSatisfiable(TusError):
    status, reason, message = 416, "Range Not Satisfiable", "range not satisfiable"


class Locked(TusError):
    status, reason, message = 423, "Locked", "upload is busy with another request"


class TooManyRequests(TusError):
    status, reason, message = 429, "Too Many Requests", "too many uploads"


class ChecksumMismatch(TusError):
    status, reason, message = 460, "Checksum Mismatch", "checksum mismatch"


class InternalError(TusError):
    status, reason, message = 500, "Internal Server Error", "internal server error"


class BodyReadTimeout(InternalError):
    """The body fell silent for TUS_BODY_TIMEOUT: a 500 as tusd's ERR_READ_TIMEOUT, which tus
    clients retry (tus-js-client and Uppy give up on a 408)."""
    message = "the request body stopped arriving"


class NotImplementedCoding(TusError):
    status, reason, message = 501, "Not Implemented", "only Transfer-Encoding: chunked is supported"


class StorageUnavailable(TusError):
    status, reason, message = 503, "Service Unavailable", "storage unavailable, retry later"


def render(error: TusError) -> Response:
    response = Response(error.text + "\n", status=f"{error.status} {error.reason}",
                        mimetype="text/plain")
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def log_safe(value: str) -> str:
    """`value` with control and non-ASCII characters escaped (`\\n`, `\\u2028`): paths and header
    values come from the client, and a raw newline in them would forge a log line."""
    return value.encode("unicode_escape").decode("ascii")


def _upload_id() -> str:
    return log_safe((request.view_args or {}).get("upload_id", "-"))


def log_and_render(error: TusError) -> Response:
    """The one place an error becomes a response, with a log line naming the upload."""
    level = logging.WARNING if error.status >= 500 else logging.INFO
    log.log(level, "%s %s upload_id=%s -> %d %s", log_safe(request.method), log_safe(request.path),
            _upload_id(), error.status, log_safe(error.text))
    return render(error)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(TusError, log_and_render)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Routing and Werkzeug errors (404 for unknown paths, 405 with its Allow header...).
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        mapped = TusError(error.description.split(".")[0] if error.description else error.name,
                          headers)
        mapped.status, mapped.reason = error.code or 500, error.name
        return render(mapped)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error %s %s upload_id=%s", log_safe(request.method),
                      log_safe(request.path), _upload_id())
        return render(InternalError())
