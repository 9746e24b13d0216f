"""gunicorn's threaded worker, with plain-text answers to requests it refuses before the app.

gunicorn parses the request line and headers itself and answers oversized ones (431, 414) with
an HTML page and no `Tus-Resumable`, so a tus client sees markup it cannot show and no sign it
reached a tus server. Only those limit errors are answered here; every other error keeps
gunicorn's own handling (and its access log line). The gevent worker (`gevent_worker.py`, the
default) answers them the same way.
"""
from __future__ import annotations

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker

TUS_VERSION = "1.0.0"  # errors.TUS_VERSION, not imported: the worker must not load Flask early


def plain_error(status: int, reason: str, text: str, headers: dict | None = None) -> bytes:
    body = (text + "\n").encode("latin-1", "replace")
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Tus-Resumable: {TUS_VERSION}\r\nCache-Control: no-store\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class PlainLimitErrors:
    """Mixed into a gunicorn worker: 431 and 414 in plain text, with `Tus-Resumable`."""

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, LimitRequestHeaders):
            answer = plain_error(431, "Request Header Fields Too Large",
                                 f"request headers too large: {exc}")
        elif isinstance(exc, LimitRequestLine):
            answer = plain_error(414, "URI Too Long", f"request line too long: {exc}")
        else:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")


class TusThreadWorker(PlainLimitErrors, ThreadWorker):
    """`TUS_WORKER=gthread`: a thread per connection that sends a request (`THREADS` each)."""
