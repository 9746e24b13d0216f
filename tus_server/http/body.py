"""The PATCH/POST request body as a stream that keeps every byte that arrived.

Why not just `wsgi.input.read(n)`: WSGI servers fill a whole read before returning it, so when
the connection is cut mid-read everything in that read is lost (5120 bytes sent then a reset:
0 stored), and a blocked read can be neither timed out nor stopped from outside.
`RequestBody.readinto` returns each piece as soon as the socket hands it over:
* gunicorn, Content-Length: the bytes gunicorn read ahead with the headers, then `recv_into`
  straight from the client socket into the chunk buffer (no copies, reads of up to 1 MiB);
* chunked: one piece of gunicorn's chunked decoder at a time (on Werkzeug's development server
  too, whose own decoder takes `0x5`, `5 ` or `5_0` as sizes);
* Werkzeug's development server, Content-Length: `readinto1` on its buffered socket file.
A chunked body whose framing is wrong (a size that is not 1*HEXDIG, one past 2**63, data
longer than its chunk) ends at the last well-framed byte with `malformed` set: the caller
keeps what came before and answers 400, never storing framing as data.
Every socket read of the server's own readers is routed through `_PatientSocket`, which waits
for data until `stop()` (a lease hand-over, a worker shutting down) or `TUS_BODY_TIMEOUT`
seconds of silence: under threads in short polls that look at the stop flag; under gevent (the
default worker, a greenlet per connection) on one event-loop watcher that `stop()` cancels, so
thousands of silent bodies cost no CPU. A stopped body still takes what has
already arrived in the kernel's buffer, then ends; a cut connection ends it too, with
`interrupted` set. Bytes returned before stay counted. A body not read to its end leaves its
connection unusable, so it is closed after the response.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from typing import Optional

from gunicorn.http.body import ChunkedReader
from gunicorn.http.errors import InvalidChunkSize, ParseException
from gunicorn.http.unreader import Unreader

from .. import cooperative

log = logging.getLogger("tus_server")

PIECE = 1024 * 1024
# Seconds between looks at the stop flag while waiting for body bytes.
POLL = 0.2
# Once stopped, a body still takes bytes that keep arriving with gaps under GAP seconds, for
# at most STOP_GRACE seconds.
GAP = 0.05
STOP_GRACE = 0.5
# Seconds `has_more` waits for a chunked body's next bytes or its end.
END_PROBE = 1.0

# The `RequestBody` reading the request's body, in its WSGI environ.
BODY_TAKEN = "tus_server.body_taken"
# The largest chunk size taken: what a signed 64-bit offset holds (nginx's bound; Go's net/http,
# tusd's, takes at most 16 hex digits). A larger one is a framing error, not a promise of data.
MAX_CHUNK = (1 << 63) - 1

_active: set["RequestBody"] = set()
_active_guard = threading.Lock()
_idle = threading.Condition(_active_guard)
_stopping: Optional[str] = None


def stop_all(reason: str = "shutdown") -> int:
    """Stop every body being read in this process, and every later one; returns how many."""
    global _stopping
    with _active_guard:
        _stopping = reason
        bodies = list(_active)
    for body in bodies:
        body.stop(reason)
    return len(bodies)


def wait_idle(timeout: float) -> bool:
    """Wait until every request that read a body in this process has sent its answer."""
    with _idle:
        return _idle.wait_for(lambda: not _active, timeout=timeout)


def answered(environ: dict) -> None:
    """The answer to the request whose body `environ` holds has been sent (the app calls this
    when the WSGI server closes the response): a shutdown need not wait for it any more."""
    body = environ.get(BODY_TAKEN)
    if isinstance(body, RequestBody):
        body._release(answered=True)


class _PatientSocket:
    """Stands in for the client socket inside the server's reader: waits for data in polls
    of `POLL` seconds (threads) or until woken (gevent), so a stop or a silence timeout can end
    the wait; EOF once stopped and drained. Everything else is the real socket's."""

    def __init__(self, sock, body: "RequestBody"):
        self._sock = sock
        self._body = body
        self._stop_deadline: Optional[float] = None
        # Under gevent: reads never block (timeout 0.0 while they try), waits are on `_waiter`.
        self._waiter = cooperative.ReadWaiter(sock.fileno()) if cooperative.active() else None
        if self._waiter is not None:
            self._timeout = sock.gettimeout()
            return
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN | select.POLLPRI)
        # The no-poll first try needs a plain blocking socket: TLS sockets take no recv flags,
        # and with a timeout Python would wait for readability before trying.
        self._plain = not isinstance(sock, ssl.SSLSocket) and sock.gettimeout() is None

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def _readable(self, timeout: float) -> bool:
        if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return True
        return bool(self._poll.poll(timeout * 1000))

    def _allowed(self) -> bool:
        """Wait until a read will not block: True to read, False when the body ends here."""
        silent_since = time.monotonic()
        while True:
            if self._body.stop_reason:
                # Take what arrives without a pause (a dead client's kernel still delivers
                # what it had sent), for at most STOP_GRACE seconds, then end.
                if self._stop_deadline is None:
                    self._stop_deadline = time.monotonic() + STOP_GRACE
                left = self._stop_deadline - time.monotonic()
                return left > 0 and self._readable(min(left, GAP))
            if self._readable(POLL):
                return True
            if time.monotonic() - silent_since >= self._body.timeout:
                raise TimeoutError("request body silent")

    # ----------------------------------------------------------------- under gevent
    def _try(self, read, *args):
        """One read that does not wait: its result, or None when nothing has arrived."""
        self._sock.settimeout(0.0)
        try:
            return read(*args)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        finally:
            self._sock.settimeout(self._timeout)

    def _cooperative(self, read, *args):
        """`read(*args)` once bytes arrive; None when the body ends here (stopped, drained)."""
        silent_since = time.monotonic()
        while True:
            got = self._try(read, *args)
            if got is not None:
                return got
            if self._body.stop_reason:  # as `_allowed`: what arrives without a pause, then end
                if self._stop_deadline is None:
                    self._stop_deadline = time.monotonic() + STOP_GRACE
                left = self._stop_deadline - time.monotonic()
                if left <= 0 or not self._waiter.wait(min(left, GAP)):
                    return None
                continue
            left = self._body.timeout - (time.monotonic() - silent_since)
            if left <= 0:
                raise TimeoutError("request body silent")
            self._waiter.wait(left)  # readable, silent for `left` s, or woken by stop()

    def wake(self) -> None:
        if self._waiter is not None:
            self._waiter.wake()

    def release(self) -> None:
        if self._waiter is not None:
            self._waiter.close()

    # ----------------------------------------------------------------- the socket's reads
    def recv(self, size: int, *flags) -> bytes:
        if self._waiter is not None:
            got = self._cooperative(self._sock.recv, size, *flags)
            return b"" if got is None else got
        if self._plain and not self._body.stop_reason:
            try:  # bytes already waiting: no poll() first (most reads of a fast upload)
                return self._sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        return self._sock.recv(size, *flags) if self._allowed() else b""

    def recv_into(self, buffer, nbytes: int = 0, *flags) -> int:
        if self._waiter is not None:
            got = self._cooperative(self._sock.recv_into, buffer, nbytes, *flags)
            return got or 0
        if self._plain and not self._body.stop_reason:
            try:
                return self._sock.recv_into(buffer, nbytes, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        return self._sock.recv_into(buffer, nbytes, *flags) if self._allowed() else 0


def drain_unread(environ: dict, content_length: Optional[int], seconds: float = 5.0) -> None:
    """Read and drop the body of a request that was answered without reading it.

    Called after the answer went out (a refused PATCH: 409, 413, 423...). A client such as
    Node's keeps writing its body while the answer travels; closing the socket with the body
    unread makes the kernel reset the connection, and the client reports `write EPIPE`
    instead of the status. Reading on (in the request's thread, for at most `seconds`) lets it
    read the answer; a body that ends in time even leaves the connection reusable.
    """
    if environ.get(BODY_TAKEN) or (content_length == 0) or environ.get("wsgi.input") is None:
        return
    body = RequestBody(environ, content_length, timeout=1.0, awaits_answer=False)
    scratch = memoryview(bytearray(PIECE))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and body.readinto(scratch):
            pass
    finally:
        body.close()


class _FileUnreader(Unreader):
    """gunicorn's chunked decoder reading Werkzeug's buffered socket file."""

    def __init__(self, rfile):
        super().__init__()
        self._rfile = rfile

    def chunk(self, size_hint=None):
        return self._rfile.read1(min(size_hint or 8192, PIECE))


class _NoRequest:
    """The request gunicorn's decoder reports trailers to on Werkzeug's server: they are
    read (so the body ends where it should) and dropped, as the app reads none."""
    trailers = None

    def parse_headers(self, data, from_trailer=False):
        return []


def _bounded(parse_chunk_size):
    def parse(unreader, data=None):
        size, rest = parse_chunk_size(unreader, data)
        if size > MAX_CHUNK:
            raise InvalidChunkSize(b"chunk size over 2**63")
        return size, rest
    return parse


class RequestBody:
    def __init__(self, environ: dict, content_length: Optional[int], timeout: float = 60.0,
                 awaits_answer: bool = True):
        """`awaits_answer`: the body keeps a shutdown waiting until `answered(environ)` too,
        not only until `close()` (so the worker does not exit before the answer went out)."""
        environ[BODY_TAKEN] = self
        self._awaits_answer = awaits_answer
        self._closed = False
        self._input = environ.get("wsgi.input")
        self._remaining = content_length  # None: chunked, read to the end
        self.timeout = timeout
        self.interrupted = False
        self.timed_out = False
        self.malformed: Optional[str] = None  # what was wrong with a chunked body's framing
        self.stop_reason: Optional[str] = None
        self.received = 0
        self._ended = content_length == 0
        self._pending = memoryview(b"")
        self._reader = getattr(self._input, "reader", None)  # gunicorn's Body has one
        self._restore = None  # (object, attribute, original socket) swapped for the wait
        self._sock = None
        self._mode = self._attach(environ)
        with _active_guard:
            _active.add(self)
            stopping = _stopping
        if stopping:
            self.stop(stopping)

    def _swap(self, owner, attribute: str) -> _PatientSocket:
        original = getattr(owner, attribute)
        patient = _PatientSocket(original, self)
        setattr(owner, attribute, patient)
        self._restore = (owner, attribute, original)
        return patient

    def _attach(self, environ: dict) -> str:
        """Pick how to read, and route the server's socket reads through `_PatientSocket`."""
        kind = type(self._reader).__name__
        unreader = getattr(self._reader, "unreader", None) or \
            getattr(getattr(self._reader, "req", None), "unreader", None)
        if kind in ("LengthReader", "ChunkedReader") and hasattr(unreader, "sock"):
            self._sock = self._swap(unreader, "sock")
            if kind == "ChunkedReader":
                # Looked up on the instance by the decoder for every chunk: adds the bound.
                self._reader.parse_chunk_size = _bounded(self._reader.parse_chunk_size)
                return "gunicorn-chunked"
            if self._remaining is not None:
                # The body bytes gunicorn already holds, read together with the headers.
                held = self._input.buf.getvalue() + unreader.take_buffered()
                self._input.buf.seek(0)
                self._input.buf.truncate()
                mine, rest = held[:self._remaining], held[self._remaining:]
                if rest:  # a pipelined next request
                    unreader.unread(rest)
                self._pending = memoryview(mine)
                return "gunicorn-length"
        raw = getattr(self._input, "raw", None)
        if raw is None:  # Werkzeug's chunked input wraps its buffered socket file
            raw = getattr(getattr(self._input, "_rfile", None), "raw", None)
        if raw is not None and hasattr(raw, "_sock"):
            self._sock = self._swap(raw, "_sock")
        rfile = getattr(self._input, "_rfile", None)
        if self._remaining is None and rfile is not None:  # Werkzeug's DechunkedInput
            self._reader = ChunkedReader(_NoRequest(), _FileUnreader(rfile))
            self._reader.parse_chunk_size = _bounded(self._reader.parse_chunk_size)
            return "gunicorn-chunked"
        return "readinto1" if hasattr(self._input, "readinto1") else "read"

    # ----------------------------------------------------------------- reading
    @property
    def complete(self) -> bool:
        """The body was read to its end."""
        return self._ended or self._remaining == 0

    def readinto(self, view: memoryview) -> int:
        if self.complete or self.interrupted or not len(view):
            return 0
        size = min(len(view), PIECE)
        if self._remaining is not None:
            size = min(size, self._remaining)
        try:
            n = self._read_piece(view[:size])
        except TimeoutError:
            self.timed_out = True
            log.info("request body silent for %.0f s; keeping the %d bytes received",
                     self.timeout, self.received)
            n = 0
        except ParseException as exc:  # bad framing (gunicorn's NoMoreData is a cut instead)
            if not self.stop_reason:  # a stop ends the socket mid-frame: not the client's fault
                self.malformed = f"{type(exc).__name__}: {exc}"[:200]
                log.info("malformed chunked body (%s); keeping the %d bytes before it",
                         self.malformed, self.received)
            n = 0
        except Exception:  # a reset surfaces as many exception types
            n = 0
        if n == 0:
            if not self.complete:
                self.interrupted = True
            return 0
        self.received += n
        if self._remaining is not None:
            self._remaining -= n
            if self._mode == "gunicorn-length":
                self._reader.length -= n
        return n

    def _read_piece(self, view: memoryview) -> int:
        if len(self._pending):
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._mode == "gunicorn-length":
            return self._sock.recv_into(view, len(view))
        if self._mode == "gunicorn-chunked":
            try:
                piece = next(self._reader.parser) if self._reader.parser else b""
            except StopIteration:
                piece = b""
            if not piece:
                self._reader.parser = None
                self._ended = True
                return 0
            self._pending = memoryview(piece)
            return self._read_piece(view)
        if self._mode == "readinto1":
            n = self._input.readinto1(view) or 0
        else:
            data = self._input.read(min(len(view), 64 * 1024))
            n = len(data)
            view[:n] = data
        if n == 0 and self._remaining is None and not self.stop_reason:
            self._ended = True
        return n

    def has_more(self) -> bool:
        """Is there body left past what was read? For chunked bodies, wait briefly for the
        next bytes or the end; an undecided body counts as ended (its connection is closed)."""
        if self._remaining is not None:
            return self._remaining > 0
        if self.complete:
            return False
        timeout, self.timeout = self.timeout, END_PROBE
        try:
            n = self.readinto(memoryview(bytearray(1)))
        finally:
            self.timeout = timeout
        if n:
            return True
        self.interrupted = self.timed_out = False  # nothing more came: no cut of what we stored
        return False

    # ----------------------------------------------------------------- stopping, closing
    def _release(self, closed: bool = False, answered: bool = False) -> None:
        with _idle:
            self._closed |= closed
            self._awaits_answer &= not answered
            if self._closed and not self._awaits_answer:
                _active.discard(self)
                _idle.notify_all()

    def stop(self, reason: str) -> None:
        """End the body early, from any thread: the read in progress ends within `POLL` s,
        after taking what already arrived."""
        if self.stop_reason is None:
            self.stop_reason = reason
            if self._sock is not None:
                self._sock.wake()

    def close(self) -> None:
        """Done with the body: a connection whose body was not read to the end is closed."""
        self._release(closed=True)
        if self._restore is not None:
            owner, attribute, original = self._restore
            setattr(owner, attribute, original)
            self._restore = None
            self._sock.release()
        if not self.complete or self.stop_reason:
            if hasattr(self._input, "failed"):
                self._input.failed = True  # gunicorn closes instead of reusing the connection
