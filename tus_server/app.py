"""`create_app`: wires settings, the store, the tus and download blueprints, CORS, the page."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

from flask import Flask, jsonify, send_from_directory
from flask_cors import CORS

from . import errors
from .checksums import ALGORITHMS
from .config import Settings
from .downloads import bp as downloads_bp
from .minio_backend import MinioStore
from .protocol import EXTENSIONS, bp as tus_bp
from .store import (
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
)

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
log = logging.getLogger("tus_server")

# Response headers a browser client must be allowed to read, request headers it may send.
EXPOSED_HEADERS = ["Location", "Upload-Offset", "Upload-Length", "Upload-Metadata",
                   "Upload-Expires", "Upload-Defer-Length", "Upload-Concat", "Tus-Version",
                   "Tus-Resumable", "Tus-Max-Size", "Tus-Extension", "Tus-Checksum-Algorithm",
                   "Repr-Digest", "Content-Disposition", "Content-Range", "ETag"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Tus-Resumable", "Upload-Length",
                   "Upload-Offset", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat",
                   "Upload-Checksum", "X-HTTP-Method-Override", "X-Requested-With", "Range",
                   "If-Range", "If-None-Match"]


class MethodOverride:
    """`X-HTTP-Method-Override` names the method; the request line's method is ignored."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
        if override:
            environ["REQUEST_METHOD"] = override
        return self.wsgi_app(environ, start_response)


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
    if isinstance(error, UploadLocked):
        return errors.Locked(str(error))
    if isinstance(error, ChecksumMismatch):
        return errors.ChecksumMismatch(str(error))
    if isinstance(error, ServerStopping):
        return errors.StorageUnavailable(str(error) + ", retry later")
    if isinstance(error, StorageUnavailable):
        return errors.StorageUnavailable(f"storage unavailable ({error}), retry later")
    if isinstance(error, StoredDataCorrupt):
        return errors.InternalError("stored data failed verification")
    return errors.InternalError()


class Sweeper:
    """Removes expired uploads every `interval` seconds in a daemon thread until stopped."""

    def __init__(self, store: Store, interval: int):
        self.store = store
        self.interval = interval
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
                if removed:
                    log.info("sweeper removed %d expired uploads", len(removed))
            except Exception:
                log.warning("sweep failed", exc_info=True)


def create_app(settings: Optional[Settings] = None, store: Optional[Store] = None) -> Flask:
    settings = settings or Settings.from_env()
    store = store or MinioStore(settings)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app = Flask(__name__, static_folder=None)
    app.config["TUS_SETTINGS"] = settings
    app.config["TUS_STORE"] = store
    app.wsgi_app = MethodOverride(app.wsgi_app)
    app.json.sort_keys = False

    errors.register_error_handlers(app)

    @app.errorhandler(StoreError)
    def store_error(error: StoreError):
        mapped = _store_error(error)
        if isinstance(error, (StorageUnavailable, ServerStopping)):
            mapped.headers["Retry-After"] = str(settings.retry_after)
        return errors.log_and_render(mapped)

    app.register_blueprint(tus_bp)
    app.register_blueprint(downloads_bp)

    if settings.cors_origins:
        origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        CORS(app, origins=origins, expose_headers=EXPOSED_HEADERS, allow_headers=ALLOWED_HEADERS,
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
        return send_from_directory(WEB_DIR, "uppy-client.html")

    @app.get("/web/<path:name>")
    def web_asset(name: str):
        return send_from_directory(WEB_DIR, name)

    @app.get("/vendor/uppy/<path:name>")
    def uppy_asset(name: str):
        return send_from_directory(settings.uppy_dist, name)

    @app.get("/healthz")
    def healthz():
        if store.healthy():
            return jsonify({"status": "ok", "minio": settings.minio_endpoint})
        response = jsonify({"status": "unavailable", "minio": settings.minio_endpoint})
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
        })

    if settings.cleanup_interval:
        app.extensions["tus_sweeper"] = Sweeper(store, settings.cleanup_interval).start()
    return app
