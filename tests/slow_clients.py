"""Many slow clients from one thread, for the slow-clients test and `make bench`'s row.

* trickling PATCHes: an upload is created, then its PATCH sends headers and `first` body
  bytes, then one more byte every `every` seconds, never reaching its Content-Length;
* half-sent headers: `PATCH /files/x HTTP/1.1` and a Host line, nothing more;
* fresh clients beside them: create, PATCH 256 KiB, HEAD, each timed.
Raw sockets, no thread per connection: the client must not be what limits the count.
"""
from __future__ import annotations

import os
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

import requests

TUS = {"Tus-Resumable": "1.0.0"}
FRESH_BYTES = 256 * 1024


def raise_open_files(wanted: int) -> None:
    """Raise this process's open-file limit to `wanted` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class Fresh:
    ok: bool
    seconds: float
    detail: str = ""


def fresh_client(files_url: str, timeout: float) -> Fresh:
    """create + PATCH 256 KiB + HEAD, checking the offset; its wall time."""
    body = os.urandom(FRESH_BYTES)
    started = time.monotonic()
    try:
        with requests.Session() as session:
            r = session.post(files_url, headers={**TUS, "Upload-Length": str(len(body))},
                             timeout=timeout)
            if r.status_code != 201:
                return Fresh(False, time.monotonic() - started, f"create {r.status_code}")
            url = requests.compat.urljoin(files_url, r.headers["Location"])
            r = session.patch(url, data=body, timeout=timeout, headers={
                **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
            if r.status_code != 204:
                return Fresh(False, time.monotonic() - started, f"patch {r.status_code}")
            r = session.head(url, headers=TUS, timeout=timeout)
            offset = r.headers.get("Upload-Offset")
            if r.status_code != 200 or offset != str(len(body)):
                return Fresh(False, time.monotonic() - started, f"head {r.status_code} {offset}")
    except requests.RequestException as exc:
        return Fresh(False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"[:200])
    return Fresh(True, time.monotonic() - started)


def fresh_clients(files_url: str, count: int, timeout: float) -> list[Fresh]:
    """`count` fresh clients at once."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: fresh_client(files_url, timeout), range(count)))


@dataclass
class Trickle:
    path: str
    sock: Optional[socket.socket] = None
    sent: int = 0
    cut: bool = False  # the server ended the connection before we did


@dataclass
class SlowLoad:
    files_url: str
    patches: int
    half_headers: int
    first: int = 100
    every: float = 2.0
    length: int = 1024 * 1024  # each trickling upload's length (never reached)
    trickles: list[Trickle] = field(default_factory=list)
    halves: list[socket.socket] = field(default_factory=list)
    _next_byte: float = 0.0

    def __post_init__(self):
        parts = urlsplit(self.files_url)
        self.address = (parts.hostname, parts.port or 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        raise_open_files(2 * (self.patches + self.half_headers) + 1024)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setblocking(False)
        return sock

    def create_uploads(self, workers: int = 16) -> None:
        def create(_) -> str:
            r = requests.post(self.files_url, timeout=60,
                              headers={**TUS, "Upload-Length": str(self.length)})
            r.raise_for_status()
            return urlsplit(requests.compat.urljoin(self.files_url, r.headers["Location"])).path

        with ThreadPoolExecutor(workers) as pool:
            self.trickles = [Trickle(path) for path in pool.map(create, range(self.patches))]

    def open(self) -> None:
        """Start every trickling PATCH (headers + `first` bytes) and every half-sent header."""
        self.open_trickles()
        self.open_halves()

    def open_trickles(self) -> None:
        host = f"{self.address[0]}:{self.address[1]}"
        for trickle in self.trickles:
            trickle.sock = self._connect()
            head = (f"PATCH {trickle.path} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n"
                    f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                    f"Content-Length: {self.length}\r\n\r\n").encode()
            trickle.sock.sendall(head + b"x" * self.first)
            trickle.sent = self.first
        self._next_byte = time.monotonic() + self.every

    def open_halves(self) -> None:
        host = f"{self.address[0]}:{self.address[1]}"
        for _ in range(self.half_headers):
            sock = self._connect()
            sock.sendall(f"PATCH /files/x HTTP/1.1\r\nHost: {host}\r\n".encode())
            self.halves.append(sock)

    def tick(self) -> None:
        """Send the next byte of every open trickle when it is due."""
        if time.monotonic() < self._next_byte:
            return
        self._next_byte += self.every
        for trickle in self.trickles:
            if trickle.sock is None or trickle.cut:
                continue
            try:
                if trickle.sock.send(b"y") == 1:
                    trickle.sent += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                trickle.cut = True

    def hold(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.tick()
            time.sleep(0.05)

    def halves_open(self) -> int:
        """Half-sent-header connections the server has not closed."""
        still = 0
        for sock in self.halves:
            try:
                still += sock.recv(1) != b""  # b"": closed by the server
            except BlockingIOError:
                still += 1
            except OSError:
                pass
        return still

    def close(self) -> None:
        for trickle in self.trickles:
            if trickle.sock is not None:
                trickle.sock.close()
        for sock in self.halves:
            sock.close()
        self.halves = []

    def offsets(self, workers: int = 16) -> dict[str, tuple[int, Optional[str]]]:
        """Each trickled upload's (bytes sent, Upload-Offset the server reports)."""
        def head(trickle: Trickle) -> tuple[str, tuple[int, Optional[str]]]:
            deadline = time.monotonic() + 60
            while True:  # 503 (every connection busy) and 423 (still storing) are retried,
                # and so is an offset short of what was sent for a while: the PATCH of a
                # connection just closed may still be on its way to storing its bytes.
                r = requests.head(self.origin + trickle.path, headers=TUS, timeout=60)
                offset = r.headers.get("Upload-Offset")
                settled = r.status_code not in (423, 503) and offset == str(trickle.sent)
                if settled or time.monotonic() > deadline:
                    return trickle.path, (trickle.sent, offset)
                time.sleep(0.2)

        with ThreadPoolExecutor(workers) as pool:
            return dict(pool.map(head, self.trickles))
