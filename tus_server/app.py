"""`create_app`: wires settings, the store, the tus and download blueprints, CORS, the page."""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Optional

from flask import Flask, jsonify, request, send_from_directory
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import errors
from .access import auth
from .config import Settings
from .events import hooks
from .http import listing  # noqa: F401  (registers GET /files on the tus blueprint)
from .http import ietf
from .http.body import BODY_TAKEN, answered, drain_unread
from .http.checksums import ALGORITHMS
from .http.downloads import bp as downloads_bp
from .http.tus import EXTENSIONS
from .http.tus import bp as tus_bp
from .ops import logs, metrics
from .storage.minio_backend import MinioStore
from .storage.objects import Objects
from .storage.probe import GuardedStore, StorageGuard
from .storage.store import (
    ChecksumMismatch,
    LengthExceeded,
    OffsetMismatch,
    ServerStopping,
    StorageUnavailable,
    Store,
    StoredDataCorrupt,
    StoreError,
    UploadGone,
    UploadLocked,
    UploadNotFound,
    UploadTakenOver,
)
from .storage.usage import Usage

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
log = logging.getLogger("tus_server")

# Response headers a browser client must be allowed to read: tusd's list, plus what downloads
# and the page read (digest, ranges, validators, Retry-After on 503).
EXPOSED_HEADERS = ["Upload-Offset", "Location", "Upload-Length", "Tus-Version", "Tus-Resumable",
                   "Tus-Max-Size", "Tus-Extension", "Upload-Metadata", "Upload-Defer-Length",
                   "Upload-Concat", "Upload-Expires", "Tus-Checksum-Algorithm", "Repr-Digest",
                   "Content-Disposition", "Content-Range", "Content-Length", "Accept-Ranges",
                   "ETag", "Last-Modified", "Retry-After",
                   # the IETF draft's (tus_server/ietf.py)
                   "Upload-Complete", "Upload-Limit"]
# Request headers a cross-origin page may send: tusd's default allow list (so `addRequestId`,
# `Authorization` and method override work as they do against tusd), plus checksums and
# conditional range requests; TUS_CORS_ALLOW_HEADERS adds more.
TUSD_ALLOWED_HEADERS = ["Authorization", "Origin", "X-Requested-With", "X-Request-ID",
                        "X-HTTP-Method-Override", "Content-Type", "Upload-Length",
                        "Upload-Offset", "Tus-Resumable", "Upload-Metadata",
                        "Upload-Defer-Length", "Upload-Concat"]
ALLOWED_HEADERS = TUSD_ALLOWED_HEADERS + ["Upload-Checksum", "Range", "If-Range",
                                          "If-None-Match",
                                          # the IETF draft's (tus_server/ietf.py)
                                          "Upload-Draft-Interop-Version", "Upload-Complete",
                                          "Content-Digest", "Repr-Digest", "Content-Disposition"]


def allowed_header_patterns(extra: tuple[str, ...]) -> list[re.Pattern]:
    """flask-cors reads header names as regexes matched at their start (`X-Request` would let
    `X-Request-Anything` in); escaped and anchored, each name allows exactly itself."""
    names = list(dict.fromkeys(h.lower() for h in ALLOWED_HEADERS + list(extra)))
    return [re.compile(re.escape(name) + r"\Z", re.IGNORECASE) for name in names]


class MethodOverride:
    """On a POST, `X-HTTP-Method-Override` names the method (for clients that can only send
    GET and POST), as tusd does. Never on GET/HEAD/OPTIONS: a link or an image tag (which can
    set no headers, but proxies and caches treat as safe) must not turn into a PATCH or DELETE."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
        if override and environ.get("REQUEST_METHOD", "").upper() == "POST":
            environ["REQUEST_METHOD"] = override
        return self.wsgi_app(environ, start_response)


# A URL path as RFC 3986 writes one (pchar and `/`), starting with exactly one `/`.
PREFIX_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")


class PathOnlyPrefix:
    """`X-Forwarded-Prefix` becomes the start of every `Location` (ProxyFix puts it in
    SCRIPT_NAME): one that is not a plain path (`//evil.example`, `https://…`, a backslash) is
    dropped, so a request cannot make the server send clients elsewhere."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        prefix = environ.get("HTTP_X_FORWARDED_PREFIX")
        if prefix is not None and not all(PREFIX_PATH.fullmatch(part.strip())
                                          for part in prefix.split(",")):
            log.warning("ignoring X-Forwarded-Prefix %s: not a path",
                        errors.log_safe(prefix[:200]))
            del environ["HTTP_X_FORWARDED_PREFIX"]
        return self.wsgi_app(environ, start_response)


def _host_name(host: str) -> str:
    """`Host` without its port: `example.com:8080` -> `example.com`, `[::1]:5000` -> `[::1]`."""
    name = host.rsplit(":", 1)[0] if host.rfind(":") > host.rfind("]") else host
    return name.lower()


def host_trusted(host: str, trusted: tuple[str, ...]) -> bool:
    """Flask's TRUSTED_HOSTS rules (any port; `.example.com` takes its subdomains), done here
    because Werkzeug 3.1 cannot match an IPv6 entry such as `[::1]`."""
    if not trusted:
        return True
    name = _host_name(host)
    return any(name == entry or (entry.startswith(".") and name.endswith(entry))
               for entry in trusted)


def exact_origins(origins: tuple[str, ...]) -> list[re.Pattern]:
    """flask-cors reads a string with `*`, `[`, `?`... as a regex and matches only its start;
    escaped and anchored patterns make every listed origin match itself and nothing else."""
    return [re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins]


def _store_error(error: StoreError) -> errors.TusError:
    """The one mapping from storage outcomes to HTTP outcomes."""
    if isinstance(error, UploadNotFound):
        return errors.NotFound("upload not found")
    if isinstance(error, UploadGone):
        return errors.Gone(str(error))
    if isinstance(error, OffsetMismatch):
        return errors.Conflict(str(error))
    if isinstance(error, LengthExceeded):
        return errors.PayloadTooLarge(str(error))
    if isinstance(error, UploadTakenOver):
        # tusd's ERR_UPLOAD_INTERRUPTED: tus clients retry a 423 but not a 400, so the
        # superseded client does not come back and take the upload back from its successor.
        return errors.BadRequest(str(error))
    if isinstance(error, UploadLocked):
        return errors.Locked(str(error))
    if isinstance(error, ChecksumMismatch):
        return errors.ChecksumMismatch(str(error))
    if isinstance(error, ServerStopping):
        return errors.StorageUnavailable(str(error) + ", retry later")
    if isinstance(error, StorageUnavailable):
        # The detail (MinIO's address, the error class) goes to the log, not to the client.
        return errors.StorageUnavailable("storage unavailable, retry later")
    if isinstance(error, StoredDataCorrupt):
        return errors.InternalError("stored data failed verification")
    return errors.InternalError()


class Sweeper:
    """Removes expired uploads every `interval` seconds in a daemon thread until stopped (and
    final uploads whose partials are gone)."""

    def __init__(self, store: Store, interval: int, usage: Optional[Usage] = None):
        self.store = store
        self.interval = interval
        self.usage = usage
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tus-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                removed = self.store.expire(time.time())
                if self.usage is not None:
                    removed += self.usage.finals.expire_orphans(self.store)
                if removed:
                    log.info("sweeper removed %d expired uploads", len(removed))
            except Exception:
                log.warning("sweep failed", exc_info=True)


def attach_usage(settings: Settings, store) -> Optional[Usage]:
    """The per-owner usage records for a MinIO store, told of every upload it removes."""
    if not hasattr(store, "objects") or not hasattr(store, "on_terminated"):
        return None
    for listener in store.on_terminated:  # a store shared by several apps (tests)
        known = getattr(listener, "__self__", None)
        if isinstance(known, Usage) and known.bucket == settings.system_bucket:
            return known
    usage = Usage(settings, store.objects, store.list)
    store.on_terminated.append(usage.forget)
    return usage


def _download_served(environ, status: int, sent: int, seconds: float) -> None:
    logs.event("download served", upload_id=environ.get("PATH_INFO", "").rsplit("/", 1)[-1],
               status=status, bytes=sent, seconds=round(seconds, 3),
               client=environ.get("REMOTE_ADDR", "-"))


def create_app(settings: Optional[Settings] = None, store: Optional[Store] = None) -> Flask:
    settings = settings or Settings.from_env()
    auth.check_mode(settings)  # before anything else: an unprotected server must not start
    store = store or MinioStore(settings)
    logs.configure(settings.log_format)
    # Refuses to start (StorageRefused, one line) on an S3 server that ignores preconditions.
    guard = StorageGuard(settings, getattr(store, "objects", None) or Objects(settings))

    app = Flask(__name__, static_folder=None)
    app.config["TUS_SETTINGS"] = settings
    # The protocol sees the store through its timing (tusminio_store_seconds{verb}), behind
    # the probe (a 503 until an S3 that did not answer at start has passed it).
    app.config["TUS_STORE"] = metrics.TimedStore(GuardedStore(store, guard))
    usage = attach_usage(settings, store)
    if usage is not None:
        app.extensions["tus_usage"] = usage
    app.extensions["tus_hooks"] = hooks.Hooks(settings, app.config["TUS_STORE"]).start()
    app.after_request(hooks.merge_answer)
    if settings.metrics:
        # Inside MethodOverride, so an overridden POST counts as the method it became.
        app.wsgi_app = metrics.RequestMetrics(app.wsgi_app, _download_served)
        app.register_blueprint(metrics.bp)
    app.wsgi_app = MethodOverride(app.wsgi_app)
    if settings.behind_proxy:
        app.wsgi_app = PathOnlyPrefix(
            ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1))
    app.json.sort_keys = False
    trusted_hosts = settings.accepted_hosts()

    errors.register_error_handlers(app)

    @app.before_request
    def check_host_and_coding():
        if not host_trusted(request.host, trusted_hosts):
            raise errors.BadRequest(f"Host {request.host[:80]!r} is not served here "
                                    "(TUS_TRUSTED_HOSTS)")
        coding = request.headers.get("Transfer-Encoding")
        # Only `chunked` is decoded; reading a `gzip, chunked` body as plain bytes would store
        # the compressed bytes as the file.
        if coding is not None and coding.strip().lower() != "chunked":
            raise errors.NotImplementedCoding(
                f"Transfer-Encoding {coding[:40]!r} is not supported; only chunked is")

    auth.install(app, settings)

    @app.errorhandler(StoreError)
    def store_error(error: StoreError):
        mapped = _store_error(error)
        if isinstance(error, (StorageUnavailable, ServerStopping)):
            mapped.headers["Retry-After"] = str(settings.retry_after)
            log.warning("storage unavailable: %s", error)
        return errors.log_and_render(mapped)

    @app.after_request
    def tell_shutdown_when_answered(response):
        # A shutdown waits for the answers of the uploads it stopped, not a fixed grace.
        if request.environ.get(BODY_TAKEN) is not None:
            environ = request.environ
            response.call_on_close(lambda: answered(environ))
        return response

    @app.after_request
    def drain_refused_body(response):
        # A PATCH or POST answered without reading its body: read it after the answer.
        if request.method in ("PATCH", "POST") and response.status_code >= 400 \
                and (request.content_length or request.headers.get("Transfer-Encoding")):
            environ, length = request.environ, request.content_length
            response.call_on_close(lambda: drain_unread(environ, length))
        return response

    @app.after_request
    def no_type_without_body(response):
        # Flask gives every response `text/html`; an empty 201 or 204 has no body to describe
        # (and tools that print it mislead), so it goes.
        if response.status_code == 204 or (response.status_code == 201
                                           and not response.is_streamed
                                           and response.calculate_content_length() == 0):
            response.headers.pop("Content-Type", None)
        # Nor does a tus or IETF HEAD's 200, which describes an upload, not a body (a plain
        # HEAD of a download keeps the file's type).
        elif request.method == "HEAD" and response.status_code == 200 and (
                "Tus-Resumable" in request.headers
                or "Upload-Draft-Interop-Version" in request.headers):
            response.headers.pop("Content-Type", None)
        return response

    app.register_blueprint(tus_bp)
    app.register_blueprint(downloads_bp)
    # After every other app-level check (hosts, codings): draft requests are answered there.
    ietf.install(app)

    if settings.cors_origins:
        origins = "*" if "*" in settings.cors_origins else exact_origins(settings.cors_origins)
        CORS(app, origins=origins, expose_headers=EXPOSED_HEADERS,
             allow_headers=allowed_header_patterns(settings.cors_allow_headers),
             methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"], max_age=86400)

        if origins != "*":
            @app.after_request
            def vary_on_origin(response):
                # The answer depends on Origin even with one allowed origin (flask-cors only
                # says so for several), and downloads may be cached by the browser.
                response.vary.add("Origin")
                return response

    @app.get("/")
    def index():
        response = send_from_directory(WEB_DIR, "uppy-client.html")
        # No other site may frame the page and trick a click onto its buttons.
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.get("/web/<path:name>")
    def web_asset(name: str):
        return send_from_directory(WEB_DIR, name)

    @app.get("/vendor/uppy/<path:name>")
    def uppy_asset(name: str):
        return send_from_directory(settings.uppy_dist, name)

    @app.get("/healthz")
    def healthz():
        # MinIO's address stays in the log: the endpoint is public, the storage network is not.
        healthy = store.healthy()
        if healthy:
            try:
                guard.require()  # probes now if S3 did not answer before
            except StorageUnavailable:
                healthy = False
        if healthy:
            return jsonify({"status": "ok", **guard.detail()})
        if not guard.refused:
            log.warning("healthz: MinIO at %s does not answer", settings.minio_endpoint)
        status = "storage refused" if guard.refused else "storage unavailable"
        response = jsonify({"status": status, **guard.detail()})
        response.status_code = 503
        response.headers["Retry-After"] = str(settings.retry_after)
        return response

    @app.get("/config")
    def client_config():
        return jsonify({
            "endpoint": "/files/",
            "chunkSize": settings.chunk_size,
            "maxSize": settings.max_size or None,
            "allowedTypes": list(settings.allowed_types),
            "requireFilename": settings.require_filename,
            "expiration": settings.expiration or None,
            "extensions": list(EXTENSIONS),
            "checksumAlgorithms": list(ALGORITHMS),
            # The page asks for a token only when the server needs one.
            "auth": "jwt" if auth.enabled(settings) else None,
        })

    if settings.cleanup_interval:
        app.extensions["tus_sweeper"] = Sweeper(store, settings.cleanup_interval, usage).start()
    return app
