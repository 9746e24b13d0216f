"""A loopback TCP proxy that drops some request headers: an S3 server that ignores them.

Requests are read header block by header block (keep-alive connections carry several); the
named headers are left out and everything else, bodies included, is streamed on as it comes
(Content-Length or chunked). Responses are piped back untouched. With `stall`, a request whose
path matches it is read and never answered (a key stuck inside MinIO): its connection hangs
until the client gives up. A subclass may answer a request itself (`answer_instead`).
Signatures still hold: they cover the Host the client sent (this proxy's address), and the
server's conditional PUTs sign only the host and `x-amz-*` headers, never the preconditions
(tus_server/storage/objects.py).
"""
from __future__ import annotations

import re
import socket
import threading
from typing import Callable, Optional


class _Discard:
    """Where the body of a request answered by the proxy itself goes."""

    @staticmethod
    def sendall(data: bytes) -> None:
        pass


class HeaderStrippingProxy:
    def __init__(self, upstream: str, drop: tuple[str, ...] = (), port: int = 0,
                 stall: Optional[Callable[[str], bool]] = None):
        upstream_host, upstream_port = upstream.rsplit(":", 1)
        self.upstream = (upstream_host, int(upstream_port))
        self.drop = {name.lower().encode() for name in drop}
        self.dropped = 0  # headers left out so far (the test checks the proxy did its job)
        self.stall = stall
        self.stalled: list[str] = []  # request lines left unanswered
        self.listener = socket.create_server(("127.0.0.1", port))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.upstream)
            with self._guard:
                self._sockets += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.before_answer(source)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # Hooks for subclasses: a request line about to go to `upstream`, and answer bytes that
    # came from `upstream` about to go back.
    def before_forward(self, request_line: bytes, upstream: socket.socket) -> None:
        pass

    def before_answer(self, upstream: socket.socket) -> None:
        pass

    def answer_instead(self, request_line: bytes) -> Optional[bytes]:
        """A whole HTTP answer to send back for this request without forwarding it (its body
        is read and dropped), or None to forward it."""
        return None

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        reader = client.makefile("rb")
        try:
            while True:
                request_line = reader.readline()
                if not request_line:
                    break
                head, length, chunked = [request_line], 0, False
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() in self.drop:
                        self.dropped += 1
                        continue
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    head.append(line)
                if self.stall is not None and self.stall(request_line.split(b" ")[1].decode()):
                    self.stalled.append(request_line.decode().strip())
                    while reader.read1(65536):
                        pass  # never answered: wait until the client closes
                    break
                instead = self.answer_instead(request_line)
                # The request goes to MinIO, or to nowhere when it is answered here.
                sink = upstream if instead is None else _Discard()
                if instead is None:
                    self.before_forward(request_line, upstream)
                sink.sendall(b"".join(head) + b"\r\n")
                if chunked:
                    self._relay_chunked(reader, sink)
                else:
                    self._relay(reader, sink, length)
                if instead is not None:
                    client.sendall(instead)
        except OSError:
            pass
        finally:
            try:
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @staticmethod
    def _relay(reader, upstream: socket.socket, length: int) -> None:
        while length > 0:
            data = reader.read1(min(length, 65536))
            if not data:
                raise OSError("client went away mid-body")
            upstream.sendall(data)
            length -= len(data)

    def _relay_chunked(self, reader, upstream: socket.socket) -> None:
        while True:
            size_line = reader.readline()
            upstream.sendall(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            self._relay(reader, upstream, size + 2)  # the chunk and its CRLF
        while (trailer := reader.readline()) not in (b"\r\n", b"\n", b""):
            upstream.sendall(trailer)
        upstream.sendall(b"\r\n")

    def close(self) -> None:
        self.listener.close()
        with self._guard:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass


class ArmedAnswerProxy(HeaderStrippingProxy):
    """Forwards everything; once armed (`armed` = n), the next n requests whose request line
    matches `pattern` go through to MinIO and their answers are marked: `marked_lines` holds
    their request lines, and `on_marked_answer(upstream)` runs before such an answer would
    go back (a subclass delays it, or drops the connection)."""

    def __init__(self, target: str, pattern: re.Pattern):
        self.pattern = pattern
        self.armed = 0
        self.marked_lines: list[bytes] = []
        self._marked: set[socket.socket] = set()  # upstream connections of marked answers
        super().__init__(target)

    def before_forward(self, request_line: bytes, upstream: socket.socket) -> None:
        with self._guard:
            if self.armed and self.pattern.match(request_line):
                self.armed -= 1
                self.marked_lines.append(request_line)
                self._marked.add(upstream)

    def before_answer(self, upstream: socket.socket) -> None:
        with self._guard:
            marked = upstream in self._marked
            self._marked.discard(upstream)
        if marked:
            self.on_marked_answer(upstream)

    def on_marked_answer(self, upstream: socket.socket) -> None:
        raise NotImplementedError
