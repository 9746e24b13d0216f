"""Prometheus metrics with tusd's names, correct across gunicorn's worker processes.

Each metric is defined once, here. Under gunicorn, `gunicorn_conf` sets
`PROMETHEUS_MULTIPROC_DIR` before any worker imports this module, so every worker writes its
values to files there, `/metrics` merges them with a `MultiProcessCollector`, and `child_exit`
removes a dead worker's live gauges. Without the variable (tests, `serve`) the process's own
registry is used.

tusd's totals without a `_total` suffix (`tusd_bytes_received`, `tusd_uploads_*`) are gauges in
`sum` mode: prometheus_client appends `_total` to every Counter, and tusd dashboards query the
names as tusd exposes them. In multiprocess mode a `sum` gauge keeps a dead worker's share, so
it still only grows, like the counter it stands for.
"""
from __future__ import annotations

import os
import time
from typing import Optional

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("tusd_requests", "Total number of requests served per method.", ["method"])
ERRORS = Counter("tusd_errors", "Total number of errors per status.", ["status", "code"])
BYTES_RECEIVED = Gauge("tusd_bytes_received", "Number of bytes received for uploads.",
                       multiprocess_mode="sum")
UPLOADS_CREATED = Gauge("tusd_uploads_created", "Number of created uploads.",
                        multiprocess_mode="sum")
UPLOADS_FINISHED = Gauge("tusd_uploads_finished", "Number of finished uploads.",
                         multiprocess_mode="sum")
UPLOADS_TERMINATED = Gauge("tusd_uploads_terminated", "Number of terminated uploads.",
                           multiprocess_mode="sum")
CONNECTIONS_OPEN = Gauge("tusd_connections_open", "Current number of open requests.",
                         multiprocess_mode="livesum")
HOOK_INVOCATIONS = Counter("tusd_hook_invocations", "Total number of invocations per hook type.",
                           ["hooktype"])
HOOK_ERRORS = Counter("tusd_hook_errors", "Total number of execution errors per hook type.",
                      ["hooktype"])
STORE_SECONDS = Histogram("tusminio_store_seconds",
                          "Seconds a storage verb took (MinIO requests included), per verb.",
                          ["verb"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
OUTBOX_DEPTH = Gauge("tusminio_hook_outbox_depth",
                     "Durable hook events (post-finish, post-terminate) not yet delivered.",
                     multiprocess_mode="mostrecent")
BYTES_SERVED = Counter("tusminio_download_bytes", "Bytes of finished files sent by downloads.")

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class TimedStore:
    """The store, with each verb's duration observed in `tusminio_store_seconds{verb}`.

    The timing sits in front of the facade, so the storage package stays as it is; `open`
    returns an iterator, and what is timed there is the time to its first piece.
    """

    VERBS = ("create", "get", "write", "declare_length", "terminate", "list_ids", "list_page",
             "expire", "healthy")

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        attribute = getattr(self._store, name)
        if name not in self.VERBS and name != "open":
            return attribute

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = attribute(*args, **kwargs)
            finally:
                STORE_SECONDS.labels(name).observe(time.perf_counter() - started)
            return result

        return timed


METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")


class RequestMetrics:
    """WSGI middleware: requests by method, errors by status, open requests, bytes served.

    As middleware it also sees a download's body as it streams out, without `downloads.py`
    knowing about metrics; `on_download` gets (environ, status, bytes, seconds) at the end.
    """

    def __init__(self, wsgi_app, on_download=None):
        self.wsgi_app = wsgi_app
        self.on_download = on_download

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/files"):
            return self.wsgi_app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        # The label comes from the client (X-HTTP-Method-Override too): a fixed set of values,
        # so random methods cannot grow /metrics without bound.
        REQUESTS.labels(method if method in METHODS else "other").inc()
        CONNECTIONS_OPEN.inc()
        state: dict = {"status": 0, "started": time.monotonic()}

        def recording_start_response(status, headers, exc_info=None):
            code = int(status.split(" ", 1)[0])
            state["status"] = code
            if code >= 400:
                ERRORS.labels(str(code), status.split(" ", 1)[1] if " " in status else "").inc()
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, recording_start_response)
        except BaseException:
            CONNECTIONS_OPEN.dec()
            raise
        download = method == "GET" and path.count("/") >= 2
        return _Closing(body, state, download, environ, self.on_download)


class _Closing:
    """The response body, counting a download's bytes; closes the open-request gauge."""

    def __init__(self, body, state: dict, download: bool, environ, on_download):
        self.body = body
        self.state = state
        self.download = download
        self.environ = environ
        self.on_download = on_download
        self.sent = 0

    def __iter__(self):
        for piece in self.body:
            if self.download:
                self.sent += len(piece)
            yield piece

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            CONNECTIONS_OPEN.dec()
            if self.download and self.state["status"] in (200, 206):
                BYTES_SERVED.inc(self.sent)
                if self.on_download is not None:
                    self.on_download(self.environ, self.state["status"], self.sent,
                                     time.monotonic() - self.state["started"])


def observe_received(received: Optional[int]) -> None:
    if received:
        BYTES_RECEIVED.inc(received)
