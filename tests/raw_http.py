"""A tus PATCH spoken over a raw socket, so a test can stall, cut (FIN or RST) or trickle a
body at any byte, which HTTP client libraries do not allow."""
from __future__ import annotations

import socket
import struct
from typing import Optional
from urllib.parse import urlparse


class RawPatch:
    def __init__(self, url: str, offset: int, length: Optional[int] = None,
                 chunked: bool = False, timeout: float = 60.0):
        parts = urlparse(url)
        self.chunked = chunked
        self.sent = 0  # body bytes (not chunk framing) sent so far
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
        self.sock.sendall((
            f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"{framing}\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        if self.chunked:
            self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.sock.sendall(data)
        self.sent += len(data)

    def end_chunked(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def response(self) -> tuple[int, dict, bytes]:
        """Status, headers (lower-case names) and body of the answer, read to the end."""
        data = b""
        while b"\r\n\r\n" not in data:
            piece = self.sock.recv(65536)
            if not piece:
                raise ConnectionError(f"connection closed before a response: {data!r}")
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        want = int(headers.get("content-length", "0"))
        while len(rest) < want:
            piece = self.sock.recv(65536)
            if not piece:
                break
            rest += piece
        return status, headers, rest

    def cut(self, how: str) -> None:
        """`fin`: close normally; `rst`: abort the connection with a TCP reset."""
        if how == "rst":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
