"""Best-effort background chores of the storage layer: one daemon thread per process.

A chore is a callable that returns True when done and False (or raises) to be tried again a
second later, up to a number of attempts. Chores are what must never hold up a request or a
heartbeat: deleting superseded lock generations and old heartbeat objects, and writing the
"released" generation of a lock whose release failed on the request path. Every MinIO call a
chore makes has a short timeout of its own, so a key stuck inside MinIO delays only chores.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger("tus_server.store")

# At most this many chores wait; past it the oldest are dropped (they are only tidying).
MAX_QUEUED = 10000
RETRY_PAUSE = 1.0

_queue: deque = deque(maxlen=MAX_QUEUED)
_wake = threading.Condition()
_thread_pid = None
_running = 0  # chores being run right now (0 or 1)


def submit(chore: Callable[[], bool], attempts: int = 30) -> None:
    """Run `chore` in the background until it returns True or `attempts` tries failed."""
    global _thread_pid
    with _wake:
        _queue.append((time.monotonic(), attempts, chore))
        if _thread_pid != os.getpid():  # first use in this process (or in a forked child)
            _thread_pid = os.getpid()
            threading.Thread(target=_run, name="tus-storage-chores", daemon=True).start()
        _wake.notify()


def drain(timeout: float = 10.0) -> bool:
    """Wait until no chore is queued or running (a graceful stop, and tests that look at what
    a request left behind); False when some still were after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with _wake:
        while _queue or _running:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _wake.wait(min(left, 0.05))
    return True


def _run() -> None:
    global _running
    while True:
        with _wake:
            while not _queue:
                _wake.wait()
            due, attempts, chore = _queue.popleft()
            _running += 1
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            done = chore()
        except Exception as exc:  # MinIO away or slow: try again later
            log.debug("storage chore %r failed (%s)", chore, exc)
            done = False
        with _wake:
            if not done and attempts > 1:
                _queue.append((time.monotonic() + RETRY_PAUSE, attempts - 1, chore))
            _running -= 1
            _wake.notify_all()
