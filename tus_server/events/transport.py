"""The HTTP transport of hooks: tusd v2's wire format, sent with `requests`.

tusd's `pkg/hooks` puts one `HookHandler` interface (`InvokeHook(HookRequest) -> HookResponse`)
in front of its transports; `HttpHookSender.invoke` is that interface here, so the event code
in `hooks.py` and the durable outbox in `hooks_outbox.py` never deal with HTTP themselves.

A request is `POST <TUS_HOOKS_URL>` with `{"Type": ..., "Event": {"Upload": ..., "HTTPRequest":
...}}`; the answer is a JSON object with any of `HTTPResponse`, `RejectUpload`,
`RejectTermination`, `ChangeFileInfo`, `StopUpload`. Everything the endpoint sends is checked
here, so a malformed answer becomes one clear `HookError` and never half an instruction.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import requests

log = logging.getLogger("tus_server.hooks")


class HookError(Exception):
    """The hook endpoint could not be reached, failed, or answered something unusable."""


@dataclass
class HTTPResponse:
    """tusd's `HTTPResponse`: merged into the answer the client gets (0 / "" = unchanged)."""
    StatusCode: int = 0
    Body: str = ""
    Header: dict[str, str] = field(default_factory=dict)

    def merged_with(self, other: "HTTPResponse") -> "HTTPResponse":
        """tusd's `MergeWith`: the other's non-empty fields win, headers are united."""
        return HTTPResponse(other.StatusCode or self.StatusCode, other.Body or self.Body,
                            {**self.Header, **other.Header})

    @property
    def empty(self) -> bool:
        return not (self.StatusCode or self.Body or self.Header)


@dataclass
class HookResponse:
    HTTPResponse: HTTPResponse = field(default_factory=HTTPResponse)
    RejectUpload: bool = False
    RejectTermination: bool = False
    StopUpload: bool = False
    # ChangeFileInfo: a new ID and/or MetaData for the upload (pre-create only).
    ChangeID: Optional[str] = None
    ChangeMetaData: Optional[dict[str, str]] = None


def _expect(value, kind, name: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HookError(f"hook response: {name} must be {kind.__name__}, got "
                        f"{type(value).__name__}")
    return value


def _string_map(value, name: str) -> dict[str, str]:
    _expect(value, dict, name)
    for key, item in value.items():
        if not isinstance(item, str):
            raise HookError(f"hook response: {name}[{key!r}] must be a string")
    return dict(value)


def parse_response(raw: bytes) -> HookResponse:
    """A hook's answer body -> `HookResponse`; an empty body is an empty answer."""
    if not raw.strip():
        return HookResponse()
    try:
        data = json.loads(raw)
    except ValueError:
        raise HookError(f"hook response is not JSON: {raw[:60]!r}") from None
    _expect(data, dict, "the body")
    result = HookResponse()
    if data.get("HTTPResponse") is not None:
        http = _expect(data["HTTPResponse"], dict, "HTTPResponse")
        status = _expect(http.get("StatusCode", 0) or 0, int, "HTTPResponse.StatusCode")
        if status and not 200 <= status <= 599:
            raise HookError(f"hook response: HTTPResponse.StatusCode {status} is not 200-599")
        result.HTTPResponse = HTTPResponse(
            status, _expect(http.get("Body", "") or "", str, "HTTPResponse.Body"),
            _string_map(http.get("Header") or {}, "HTTPResponse.Header"))
        for name in result.HTTPResponse.Header:
            if not name or any(c in name for c in " :\r\n") or \
                    any(c in result.HTTPResponse.Header[name] for c in "\r\n"):
                raise HookError(f"hook response: header {name[:40]!r} is not a valid header")
    for flag in ("RejectUpload", "RejectTermination", "StopUpload"):
        if data.get(flag) is not None:
            setattr(result, flag, _expect(data[flag], bool, flag))
    if data.get("ChangeFileInfo") is not None:
        change = _expect(data["ChangeFileInfo"], dict, "ChangeFileInfo")
        if change.get("ID"):
            result.ChangeID = _expect(change["ID"], str, "ChangeFileInfo.ID")
        if change.get("MetaData") is not None:
            result.ChangeMetaData = _string_map(change["MetaData"], "ChangeFileInfo.MetaData")
    return result


class HttpHookSender:
    """POSTs hook requests; retries connection errors and 5xx answers with doubling backoff.

    A read timeout is not retried: the endpoint may have acted on the first request, and a
    blocking hook must not hold the client for several timeouts.
    """

    def __init__(self, url: str, timeout: float, retries: int, backoff: float, size_limit: int):
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.size_limit = size_limit
        self.session = requests.Session()

    def invoke(self, body: dict, headers: Optional[dict] = None,
               retries: Optional[int] = None) -> HookResponse:
        data = json.dumps(body, separators=(",", ":")).encode()
        send_headers = {**(headers or {}), "Content-Type": "application/json"}
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            try:
                return self._once(data, send_headers)
            except _Retryable as exc:
                if attempt + 1 >= attempts:
                    raise HookError(f"{exc} (after {attempts} attempts)") from None
                time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _once(self, data: bytes, headers: dict) -> HookResponse:
        try:
            response = self.session.post(self.url, data=data, headers=headers,
                                         timeout=self.timeout, stream=True)
        except requests.Timeout as exc:
            if isinstance(exc, requests.ConnectTimeout):
                raise _Retryable(f"hook endpoint did not accept a connection in "
                                 f"{self.timeout:g} s") from None
            raise HookError(f"hook endpoint did not answer in {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise _Retryable(f"hook endpoint unreachable ({type(exc).__name__})") from None
        try:
            raw = b""
            for piece in response.iter_content(16384):
                raw += piece
                if len(raw) > self.size_limit:
                    raise HookError(f"hook response is larger than {self.size_limit} bytes "
                                    "(TUS_HOOKS_SIZE_LIMIT)")
        except requests.RequestException as exc:
            raise HookError(f"hook response cut off ({type(exc).__name__})") from None
        finally:
            response.close()
        if response.status_code >= 500:
            raise _Retryable(f"hook endpoint answered {response.status_code}")
        if not 200 <= response.status_code < 300:
            raise HookError(f"hook endpoint answered {response.status_code}: {raw[:80]!r}")
        return parse_response(raw)


class _Retryable(HookError):
    pass
