"""Slow clients cannot keep a fresh one out (the gevent worker, as `make run` serves the app).

One worker, far above what the threaded worker could hold (128 threads): 300 PATCH bodies
that trickle (100 bytes, then a byte every 2 s) and 300 connections holding half-sent
headers, then 10 fresh clients (create, PATCH 256 KiB, HEAD) must all be served, every slow
upload keeps the bytes it sent, and the half-sent headers are let go after
`TUS_HEADER_TIMEOUT`. With a small `TUS_MAX_CONNECTIONS`: idle connections make room for a
new one; connections that are all in a request get 503 with Retry-After.
`make bench` runs the full scale (2,000 and 1,000, two workers) beside tusd.
"""
from __future__ import annotations

import socket
import time

import requests

from tests.slow_clients import SlowLoad, fresh_client, fresh_clients

HEADER_TIMEOUT = 8.0
# Generous: the assertion is that fresh clients are served at all, not how fast.
FRESH_TIMEOUT = 30.0


def assert_kept(load: SlowLoad) -> None:
    load.close()
    offsets = load.offsets()
    wrong = {path: got for path, got in offsets.items() if str(got[0]) != got[1]}
    assert not wrong, f"{len(wrong)} slow uploads lost bytes (sent, offset): " \
                      f"{list(wrong.values())[:5]}"


def test_fresh_clients_are_served_beside_300_trickles_and_300_half_headers(gunicorn_server):
    app = gunicorn_server(workers=1, extra_env={"TUS_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    load = SlowLoad(app.url + "/files", patches=300, half_headers=300)
    load.create_uploads()
    try:
        load.open()
        opened = time.monotonic()
        load.hold(3.0)  # a byte or two more on every trickle
        assert load.halves_open() == 300
        served = fresh_clients(app.url + "/files", 10, FRESH_TIMEOUT)
        assert [f.detail for f in served if not f.ok] == []
        assert not [t for t in load.trickles if t.cut], "a trickling PATCH was cut off"
        # The half-sent headers are closed once their deadline is past; trickles go on.
        load.hold(max(0.0, opened + HEADER_TIMEOUT + 5.0 - time.monotonic()))
        # A loaded machine may run the worker's sweep late: a little more, never forever.
        late = time.monotonic() + 20.0
        while load.halves_open() and time.monotonic() < late:
            load.hold(0.5)
        assert load.halves_open() == 0
        assert not [t for t in load.trickles if t.cut]
        assert min(t.sent for t in load.trickles) > load.first
    finally:
        assert_kept(load)
    # The MinIO client's sockets were patched too (the app was imported after gevent's patch).
    assert "MinIO client sockets and TLS cooperative: yes" in app.log_path.read_text()


def test_the_connection_cap_closes_idle_ones_first_then_answers_503(gunicorn_server):
    app = gunicorn_server(workers=1, retry_after=7, extra_env={"TUS_MAX_CONNECTIONS": "12"})
    load = SlowLoad(app.url + "/files", patches=12, half_headers=12)
    load.create_uploads(workers=4)
    try:
        # 12 half-sent headers fill the worker; a fresh client still gets in (the oldest is
        # closed to make room), and so do the 12 trickles after it, one idle one each.
        load.open_halves()
        assert fresh_client(app.url + "/files", FRESH_TIMEOUT).ok
        load.open_trickles()
        load.hold(1.0)
        assert load.halves_open() == 0
        # Every connection is now in a request: a new one is refused, in plain words.
        with socket.create_connection(load.address, timeout=10) as sock:
            sock.sendall(b"HEAD /files/x HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n")
            answer = sock.makefile("rb").read().decode("latin-1")
        assert answer.startswith("HTTP/1.1 503 ")
        assert "\r\nRetry-After: 7\r\n" in answer and "\r\nTus-Resumable: 1.0.0\r\n" in answer
        assert "too many open connections" in answer
        assert not [t for t in load.trickles if t.cut]
    finally:
        assert_kept(load)
    # The trickles are done: the worker serves again.
    assert requests.options(app.url + "/files", headers={"Tus-Resumable": "1.0.0"},
                            timeout=10).status_code == 204
