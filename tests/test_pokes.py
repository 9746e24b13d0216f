"""Pokes (`storage/pokes.py`): a hand-over request sent to a holder's UNIX socket on this
machine reaches its handler; a socket nobody listens on any more is removed; every worker of
an instance listens on one named by its heartbeat id, and removes it when it stops."""
from __future__ import annotations

import os
import queue
import signal
import socket

from tus_server.storage import pokes

from .helpers import create_url, patch
from .test_multiprocess import heartbeats


def test_a_poke_reaches_the_listener_and_a_dead_socket_is_removed():
    got: queue.Queue = queue.Queue()
    listener = pokes.Listener("test-listener-1", got.put)
    try:
        assert pokes.send("test-listener-1", "tus-" + "a" * 32)
        assert got.get(timeout=5) == "tus-" + "a" * 32
        assert not pokes.send("no-such-instance", "tus-" + "b" * 32)
        assert not pokes.send("../escape", "tus-" + "b" * 32)
    finally:
        listener.stop()
    assert not os.path.exists(os.path.join(pokes.DIRECTORY, "test-listener-1"))
    # A process killed with SIGKILL leaves its socket file: the next listener removes it.
    dead = os.path.join(pokes.DIRECTORY, "test-dead-instance")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(dead)
    sock.close()
    assert os.path.exists(dead) and not pokes.send("test-dead-instance", "tus-x")
    listener = pokes.Listener("test-listener-2", got.put)
    listener.stop()
    assert not os.path.exists(dead)


def test_each_worker_listens_by_its_heartbeat_id_until_it_stops(gunicorn_server, store):
    app = gunicorn_server(workers=2)
    ours: set = set()
    for _ in range(100):  # each worker starts its heartbeat with its first lock
        url = create_url(app.url, 10)
        assert patch(url, 0, b"0123456789").status_code == 204
        ours = {i for i, beat in heartbeats(store).items() if beat["pid"] in app.worker_pids()}
        if len(ours) == 2:
            break
    assert len(ours) == 2, ours
    for instance in ours:
        assert os.path.exists(os.path.join(pokes.DIRECTORY, instance)), instance
    app.kill(signal.SIGTERM)
    for instance in ours:
        assert not os.path.exists(os.path.join(pokes.DIRECTORY, instance)), instance
