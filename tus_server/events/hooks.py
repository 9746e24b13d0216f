"""Hooks: the protocol says what happened, this module tells the application (tusd v2 events).

The protocol calls `emit(type, info)` at a few points; nothing else in it knows about hooks.
Here an event becomes tusd's JSON (`build`) and goes to one of three places:

- blocking hooks (pre-create, pre-finish, pre-terminate) are sent in the request, with
  TUS_HOOKS_TIMEOUT and retries; their answer can reject the request or change the upload, and
  an endpoint that cannot be reached fails the request with 502 before anything is created,
  finished or removed;
- post-create and post-receive are sent by a small thread pool, from memory, as tusd does, so
  they never slow the request;
- post-finish and post-terminate are written to the durable outbox (`hooks_outbox.py`) before
  the response is sent, and delivered at least once from there.

Every event is also sent as a blinker signal (`SIGNALS[type]`), so an app that mounts
`create_app()` can subscribe in-process: `SIGNALS["post-finish"].connect(fn)`; `fn(app,
event=...)` gets the same dict the endpoint would.

Where pre-finish runs: `http/finish.py`, the one path every way of finishing takes. The store
marks an upload finished inside its `write` (or `declare_length`, or `create`), so a veto comes
before that whenever the request announces it (a Content-Length reaching the length, a declared
length equal to the offset, an empty upload, a final); a body that is then cut short sends it
again on the request that completes. A chunked body's length is unknown until it ends: its
pre-finish runs after the write, and a rejection or an unreachable endpoint then removes the
upload, so no upload is ever finished without pre-finish's consent.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Optional

from flask import current_app, g, has_request_context, request
from flask.signals import Namespace

from .. import errors
from ..config import HOOK_EVENTS, Settings
from ..names import metadata_text, safe_filename
from ..ops import logs, metrics
from ..storage.layout import INFO_NAME, chunk_count, generation_key, location
from ..storage.store import UploadInfo, WriteResult, is_upload_id
from .outbox import Deliverer, Outbox
from .transport import HookError, HookResponse, HttpHookSender, HTTPResponse

log = logging.getLogger("tus_server.hooks")
DURABLE = ("post-finish", "post-terminate")
BLOCKING = ("pre-create", "pre-finish", "pre-terminate")
_namespace = Namespace()
SIGNALS = {name: _namespace.signal(name) for name in HOOK_EVENTS}


class HookFailed(errors.TusError):
    status, reason = 502, "Bad Gateway"


class HookAnswer(errors.TusError):
    """A hook's rejection (or StopUpload), rendered with the hook's HTTPResponse merged in."""

    def __init__(self, text: str, http: HTTPResponse):
        super().__init__(http.Body or text, dict(http.Header))
        self.status = http.StatusCode or 400
        try:
            self.reason = HTTPStatus(self.status).phrase
        except ValueError:
            self.reason = "Hook Response"


def upload_event(info: UploadInfo, settings: Settings) -> dict:
    """tusd's `FileInfo`; `Storage` says where the chunk objects are, for direct reads."""
    storage = None
    if is_upload_id(info.id):
        bucket, prefix = location(settings, info.id)
        storage = {"Type": "minio", "Endpoint": settings.minio_endpoint, "Bucket": bucket,
                   "Prefix": prefix,
                   "InfoKey": prefix + (generation_key(info.version) if info.version
                                        else INFO_NAME),
                   "ChunkSize": str(info.chunk_size),
                   "KeyPattern": f"{prefix}{info.filename}.part{{X}}of"
                                 + ("_" if info.length is None else
                                    str(chunk_count(info.length, info.chunk_size)))}
        if info.length is not None:
            storage["ChunkCount"] = str(chunk_count(info.length, info.chunk_size))
    return {
        "ID": info.id, "Size": info.length or 0, "SizeIsDeferred": info.length is None,
        "Offset": info.offset,
        "MetaData": {key: metadata_text(info.metadata, key) or "" for key in info.metadata},
        "IsPartial": info.concat == "partial", "IsFinal": info.concat == "final",
        "PartialUploads": list(info.partials) if info.concat == "final" else None,
        "Storage": storage,
    }


def request_event() -> dict:
    """tusd's `HTTPRequest`: headers as lists of values, Host included."""
    if not has_request_context():
        return {"Method": "", "URI": "", "RemoteAddr": "", "Header": {}}
    header: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        header.setdefault(name, []).append(value)
    uri = request.environ.get("RAW_URI") or request.full_path.rstrip("?")
    return {"Method": request.method, "URI": uri,
            "RemoteAddr": f"{request.remote_addr}:{request.environ.get('REMOTE_PORT', '')}",
            "Header": header}


def client_address() -> str:
    return (request.remote_addr or "-") if has_request_context() else "-"


class Hooks:
    """One per app: the sender, the post-hook pool, the outbox and its deliverer."""

    def __init__(self, settings: Settings, store):
        self.settings = settings
        self.store = store
        self.enabled = set(settings.hooks_enabled) if settings.hooks_url else set()
        self.sender = HttpHookSender(settings.hooks_url, settings.hooks_timeout,
                                     settings.hooks_retries, settings.hooks_backoff,
                                     settings.hooks_size_limit) if settings.hooks_url else None
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="tus-hook")
        objects = getattr(store, "objects", None)
        self.outbox = Outbox(settings, objects) if objects is not None else None
        self.deliverer: Optional[Deliverer] = None

    def start(self) -> "Hooks":
        if self.outbox is not None and self.enabled & set(DURABLE):
            lease = self.settings.hooks_timeout + 10
            self.deliverer = Deliverer(self.outbox, self._deliver, self.settings.hooks_outbox_poll,
                                       lease, metrics.OUTBOX_DEPTH.set).start()
        return self

    def stop(self) -> None:
        if self.deliverer is not None:
            self.deliverer.stop()
        self.pool.shutdown(wait=False)

    # ----------------------------------------------------------------- building, sending
    def build(self, hook_type: str, info: UploadInfo) -> dict:
        return {"Type": hook_type, "Event": {"Upload": upload_event(info, self.settings),
                                              "HTTPRequest": request_event()}}

    def forwarded(self) -> dict:
        if not has_request_context():
            return {}
        return {name: request.headers[name] for name in self.settings.hooks_forward_headers
                if name in request.headers}

    def _send(self, body: dict, headers: dict, retries: Optional[int] = None) -> HookResponse:
        hook_type, upload_id = body["Type"], body["Event"]["Upload"]["ID"]
        metrics.HOOK_INVOCATIONS.labels(hook_type).inc()
        started = time.monotonic()
        try:
            answer = self.sender.invoke(body, headers, retries)
        except HookError as exc:
            metrics.HOOK_ERRORS.labels(hook_type).inc()
            logs.event("hook failed", hook=hook_type, upload_id=upload_id, error=str(exc),
                       seconds=round(time.monotonic() - started, 3))
            raise
        logs.event("hook delivered", hook=hook_type, upload_id=upload_id,
                   seconds=round(time.monotonic() - started, 3))
        return answer

    def _deliver(self, event: dict) -> None:
        """The outbox's sender: one attempt (the outbox does the backing off)."""
        self._send(event["body"], {**event["headers"], "Idempotency-Key": event["id"]}, 0)

    def _send_later(self, body: dict, headers: dict, on_answer=None) -> None:
        def run():
            try:
                answer = self._send(body, headers)
            except HookError:
                return
            except Exception:
                log.exception("hook %s failed", body["Type"])
                return
            if on_answer is not None:
                on_answer(answer)

        self.pool.submit(run)

    # ----------------------------------------------------------------- events
    def emit(self, hook_type: str, info: UploadInfo) -> HookResponse:
        if hook_type not in self.enabled and not SIGNALS[hook_type].receivers:
            return HookResponse()  # nobody listens: no event to build
        body = self.build(hook_type, info)
        SIGNALS[hook_type].send(current_app._get_current_object() if current_app else None,
                                event=body)
        if hook_type not in self.enabled:
            return HookResponse()
        if hook_type in BLOCKING:
            return self._blocking(hook_type, body)
        if hook_type in DURABLE and self.deliverer is not None:
            try:
                event_id = self.outbox.add(hook_type, body, self.forwarded())
            except Exception as exc:  # MinIO failed just now: still send it, from memory
                log.error("hook outbox write failed (%s); sending %s upload_id=%s from memory "
                          "only", exc, hook_type, info.id)
            else:
                logs.event("hook stored", hook=hook_type, upload_id=info.id, event_id=event_id)
                self.deliverer.wake()
                return HookResponse()
        self._send_later(body, self.forwarded())
        return HookResponse()

    def _blocking(self, hook_type: str, body: dict) -> HookResponse:
        try:
            answer = self._send(body, self.forwarded())
        except HookError:
            what = {"pre-create": "created", "pre-finish": "finished",
                    "pre-terminate": "terminated"}[hook_type]
            raise HookFailed(f"the {hook_type} hook could not be run, so the upload was not "
                             f"{what}; retry later") from None
        if answer.RejectUpload and hook_type in ("pre-create", "pre-finish"):
            raise HookAnswer("upload creation has been rejected by server"
                             if hook_type == "pre-create" else
                             "upload has been rejected by server", answer.HTTPResponse)
        if answer.RejectTermination and hook_type == "pre-terminate":
            raise HookAnswer("upload termination has been rejected by server",
                             answer.HTTPResponse)
        if not answer.HTTPResponse.empty:
            g.tus_hook_http = g.get("tus_hook_http", HTTPResponse()).merged_with(
                answer.HTTPResponse)
        return answer

    # ----------------------------------------------------------------- post-receive
    def watch(self, info: UploadInfo, offset: int, body):
        """The body, wrapped to send post-receive as the bytes arrive."""
        if "post-receive" not in self.enabled and not SIGNALS["post-receive"].receivers:
            return body
        return _Progress(self, info, offset, body)


class _Progress:
    """A request body that reports progress as tusd does: once per progress interval while
    bytes arrive, the first one interval after the request began (not on its first bytes),
    and once at its end if bytes came since. A StopUpload answer stops it (the store keeps
    what arrived, and the protocol then terminates the upload)."""

    def __init__(self, hooks: Hooks, info: UploadInfo, offset: int, body):
        self._hooks = hooks
        self._info = info
        self._offset = offset
        self._body = body
        self._request = request_event()
        self._headers = hooks.forwarded()
        self._interval = hooks.settings.hooks_progress_interval
        self._due = time.monotonic() + self._interval
        self._reported = 0
        self.read_bytes = 0
        self.stopped: Optional[HTTPResponse] = None

    def __getattr__(self, name):
        return getattr(self._body, name)

    def readinto(self, view) -> int:
        n = self._body.readinto(view)
        self.read_bytes += n
        now = time.monotonic()
        if n and now >= self._due:
            self._due = now + self._interval
            self.report()
        return n

    def finish(self) -> None:
        """The body ended: report the bytes that came since the last report."""
        if self.read_bytes != self._reported:
            self.report()

    def report(self) -> None:
        self._reported = self.read_bytes
        info = dataclasses.replace(self._info, offset=self._offset + self.read_bytes)
        body = {"Type": "post-receive", "Event": {
            "Upload": upload_event(info, self._hooks.settings), "HTTPRequest": self._request}}
        SIGNALS["post-receive"].send(None, event=body)
        if "post-receive" in self._hooks.enabled:
            self._hooks._send_later(body, self._headers, self._answered)

    def _answered(self, answer: HookResponse) -> None:
        if answer.StopUpload and self.stopped is None:
            log.info("post-receive hook stopped upload_id=%s", self._info.id)
            self.stopped = answer.HTTPResponse
            self._body.stop("hook")


def merge_answer(response):
    """After a request: a blocking hook's HTTPResponse merged into a successful answer."""
    http = g.get("tus_hook_http")
    if http is None or response.status_code >= 400:
        return response
    if http.StatusCode:
        response.status_code = http.StatusCode
    if http.Body:
        response.set_data(http.Body)
    for name, value in http.Header.items():
        response.headers[name] = value
    return response


def hooks() -> Hooks:
    return current_app.extensions["tus_hooks"]


def emit(hook_type: str, info: UploadInfo) -> HookResponse:
    return hooks().emit(hook_type, info)


def pre_create(info: UploadInfo) -> UploadInfo:
    """Run pre-create (with no ID yet, as tusd) and apply its ChangeFileInfo."""
    answer = emit("pre-create", dataclasses.replace(info, id=""))
    if answer.ChangeID is not None:
        if not is_upload_id(answer.ChangeID):
            log.error("pre-create hook's ChangeFileInfo.ID %r breaks the upload id rule "
                      "^tus-[0-9a-f]{32}$; refusing the creation", answer.ChangeID[:80])
            raise errors.InternalError("the pre-create hook chose an invalid upload id")
        info = dataclasses.replace(info, id=answer.ChangeID)
    if answer.ChangeMetaData is not None:  # decoded text in tusd's JSON, base64 when stored
        stored = {key: base64.b64encode(value.encode()).decode()
                  for key, value in answer.ChangeMetaData.items()}
        info = dataclasses.replace(info, metadata=stored, filename=safe_filename(
            metadata_text(stored, "filename") or metadata_text(stored, "name")))
    return info


def created(info: UploadInfo) -> None:
    """An upload was just created: the counter, the log line, post-create."""
    metrics.UPLOADS_CREATED.inc()
    logs.event("created", upload_id=info.id, size=info.length, filename=info.filename,
               client=client_address())
    emit("post-create", info)


def terminated(info: UploadInfo, reason: str = "DELETE") -> None:
    """An upload was just removed: the counter, the log line, and post-terminate for a
    client's DELETE (a hook's own refusal or stop is not reported back to it)."""
    metrics.UPLOADS_TERMINATED.inc()
    logs.event("terminated", upload_id=info.id, reason=reason, client=client_address())
    if reason == "DELETE":
        emit("post-terminate", info)


def finished(info: UploadInfo) -> None:
    """An upload just became complete: post-finish, the counter, the log line."""
    metrics.UPLOADS_FINISHED.inc()
    logs.event("finished", upload_id=info.id, size=info.length, client=client_address(),
               seconds=round(time.time() - info.created, 3) if info.created else None)
    emit("post-finish", info)


def written(before: UploadInfo, stream, result: WriteResult) -> None:
    """After a write: StopUpload, metrics, logs (finishing is `http/finish.py`'s)."""
    info = result.info
    if isinstance(stream, _Progress):
        stream.finish()
    metrics.observe_received(result.received)
    logs.event("chunk written", upload_id=info.id, offset=before.offset, received=result.received,
               new_offset=info.offset, size=info.length, client=client_address())
    stopped = getattr(stream, "stopped", None)
    if stopped is not None:
        hooks().store.terminate(info.id)
        terminated(info, "post-receive StopUpload")
        raise HookAnswer("upload has been stopped by server", stopped)
