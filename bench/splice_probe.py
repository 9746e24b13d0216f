"""What a splice(2) data path would save on a download: CPU per GiB of relaying GETs of 5 MiB
objects (the default chunk size) from a fresh MinIO to a local TCP sink, four ways, in one
plain blocking process (no gevent, no HTTP server: the data path only):

* `copy`: recv 1 MiB pieces into fresh `bytes`, CRC32C each, send them after the chunk is
  verified (what `storage/reader.py` does, with the worker's malloc settings,
  `storage/heap.py`);
* `copy_into`: recv into one reused buffer, CRC32C, send the buffer;
* `splice_plain`: socket -> pipe -> socket, no check at all (the zero-copy bound);
* `splice_checked`: socket -> pipe, `tee` to a second pipe that is read for the CRC32C, the
  chunk held in pipes (an unprivileged pipe holds at most 1 MiB, `F_SETPIPE_SZ`) until it is
  verified, then spliced out: the only splice path that keeps "verified before served".

    python -m bench.splice_probe [rounds]
"""
from __future__ import annotations

import ctypes
import fcntl
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import crc32c
from minio import Minio

from tests.minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess
from tus_server.storage.heap import keep_freed_memory

CHUNK, OBJECTS, PIECE = 5 << 20, 40, 1 << 20
HOLD = 512 << 10  # bytes put in each holding pipe (a 1 MiB pipe has 256 page slots)
F_SETPIPE_SZ = 1031
SINK = """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20)
while c.recv_into(buf):
    pass
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    keep_freed_memory()  # as a gunicorn worker does
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    libc.tee.restype = ctypes.c_ssize_t
    work = Path(tempfile.mkdtemp(prefix="splice-probe-"))
    minio = MinioProcess(work).start()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    out = socket.create_connection(("127.0.0.1", int(sink.stdout.readline())))
    try:
        client = Minio(minio.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        client.make_bucket("probe")
        data = os.urandom(CHUNK)
        for i in range(OBJECTS):
            client.put_object("probe", f"k{i}", io.BytesIO(data), CHUNK)
        expected = crc32c.crc32c(data)
        host, port = minio.endpoint.split(":")
        conn = socket.create_connection((host, int(port)))
        urls = [urlsplit(client.presigned_get_object("probe", f"k{i}", expires=timedelta(hours=1)))
                for i in range(OBJECTS)]

        def request(i: int) -> None:
            url = urls[i]
            conn.sendall(f"GET {url.path}?{url.query} HTTP/1.1\r\n"
                         f"Host: {url.netloc}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:  # peek, then take exactly the header bytes
                head = conn.recv(65536, socket.MSG_PEEK)
            conn.recv(head.index(b"\r\n\r\n") + 4)
            assert head.startswith(b"HTTP/1.1 200"), head[:100]

        def copy(i: int) -> None:
            request(i)
            got, crc, pieces = 0, 0, []
            while got < CHUNK:
                piece = conn.recv(min(PIECE, CHUNK - got))
                crc = crc32c.crc32c(piece, crc)
                got += len(piece)
                pieces.append(piece)
            assert crc == expected
            for piece in pieces:
                out.sendall(piece)

        buffer = memoryview(bytearray(CHUNK))

        def copy_into(i: int) -> None:
            request(i)
            got, crc = 0, 0
            while got < CHUNK:
                n = conn.recv_into(buffer[got:got + PIECE])
                crc = crc32c.crc32c(buffer[got:got + n], crc)
                got += n
            assert crc == expected
            out.sendall(buffer)

        temp_r, temp_w = os.pipe()
        copy_r, copy_w = os.pipe()
        holds = [os.pipe() for _ in range(CHUNK // HOLD + 1)]
        for _, w in [(temp_r, temp_w), (copy_r, copy_w), *holds]:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)  # the most an unprivileged process may ask
        scratch = memoryview(bytearray(HOLD))

        def splice_plain(i: int) -> None:
            request(i)
            left = CHUNK
            while left:
                n = os.splice(conn.fileno(), temp_w, min(left, PIECE))
                left -= n
                while n:
                    n -= os.splice(temp_r, out.fileno(), n)

        def splice_checked(i: int) -> None:
            request(i)
            got, crc, held = 0, 0, []
            for hold_r, hold_w in holds:
                if got >= CHUNK:
                    break
                in_pipe = 0
                while in_pipe < HOLD and got < CHUNK:
                    n = os.splice(conn.fileno(), temp_w, min(CHUNK - got, HOLD - in_pipe))
                    assert libc.tee(temp_r, copy_w, n, 0) == n  # page references, no copy
                    moved = 0
                    while moved < n:  # held until the whole chunk is verified
                        moved += os.splice(temp_r, hold_w, n - moved)
                    read = 0
                    while read < n:  # the one copy: the CRC needs the bytes
                        k = os.readv(copy_r, [scratch[:n - read]])
                        crc = crc32c.crc32c(scratch[:k], crc)
                        read += k
                    got += n
                    in_pipe += n
                held.append((hold_r, in_pipe))
            assert crc == expected
            for hold_r, n in held:
                while n:
                    n -= os.splice(hold_r, out.fileno(), n)

        gib = OBJECTS * CHUNK / 2 ** 30
        for _ in range(rounds):
            for way in (copy, copy_into, splice_plain, splice_checked):
                before, started = os.times(), time.perf_counter()
                for i in range(OBJECTS):
                    way(i)
                after, wall = os.times(), time.perf_counter() - started
                user = (after.user - before.user) / gib
                system = (after.system - before.system) / gib
                print(f"{way.__name__:15s} CPU s/GiB: user {user:.2f} + system {system:.2f} = "
                      f"{user + system:.2f}; {OBJECTS * CHUNK / wall / 1e6:.0f} MB/s", flush=True)
    finally:
        out.close()
        sink.wait(timeout=30)
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
