"""The PATCH/POST request body as a stream that never raises on a client that went away.

A tus server must keep the bytes that did arrive when a client disconnects mid-body, so a cut
connection reads as the end of the body with `interrupted` set, whatever the WSGI server
(gunicorn, Werkzeug) does on a short read.
"""
from __future__ import annotations

from typing import Optional

PIECE = 1024 * 1024


class RequestBody:
    def __init__(self, environ: dict, content_length: Optional[int]):
        self._input = environ.get("wsgi.input")
        self._remaining = content_length  # None: chunked, read to the end
        self.interrupted = False
        self.received = 0
        self._readinto = getattr(self._input, "readinto", None)

    def readinto(self, view: memoryview) -> int:
        if self._input is None or self._remaining == 0 or not len(view):
            return 0
        size = min(len(view), PIECE)
        if self._remaining is not None:
            size = min(size, self._remaining)
        try:
            if self._readinto is not None:
                n = self._readinto(view[:size]) or 0
            else:
                data = self._input.read(size)
                n = len(data)
                view[:n] = data
        except Exception:  # a reset connection surfaces as many exception types
            self.interrupted = True
            n = 0
        if n == 0:
            if self._remaining:
                self.interrupted = True
            self._remaining = 0
            return 0
        self.received += n
        if self._remaining is not None:
            self._remaining -= n
        return n
