"""What changes when the process runs under gevent (the default gunicorn worker).

The gevent worker monkey-patches the standard library before the app is imported, so threads,
locks, queues, sleeps and sockets (minio's and urllib3's included) become greenlets and
cooperative waits, and the store's code runs unchanged. Two things cannot be patched away:
* a socket wait that something else must be able to end early (a PATCH body asked to stop):
  `ReadWaiter` waits on an event-loop watcher that `wake()` can cancel, instead of polling;
* a long CPU-bound call holds every connection of the worker: `offload` runs one (the
  background digest pass's hashing) in gevent's pool of real threads, which C code that
  releases the GIL (hashlib) makes truly parallel. Short pieces (a read of up to 1 MiB: a
  download's CRC32C, piece by piece) are hashed in place.
Without gevent (the threaded worker, Werkzeug's server, the CLI) both fall back to the plain
calls. Only the standard library is imported here, gevent lazily: every layer may use this.
"""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

T = TypeVar("T")


def active() -> bool:
    """True once gevent has patched this process's sockets."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def offload(function: Callable[..., T], *args) -> T:
    """`function(*args)`, in gevent's thread pool when under gevent (a plain call otherwise)."""
    if not active():
        return function(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(function, args)


class _Woken(Exception):
    """Thrown into a waiting greenlet by `ReadWaiter.wake`."""


class ReadWaiter:
    """Waits, under gevent, until a socket is readable, `timeout` passes, or `wake()` is
    called from another greenlet: one event-loop watcher, no polling (thousands of idle
    connections cost no CPU)."""

    def __init__(self, fileno: int):
        import gevent

        self._hub = gevent.get_hub()
        self._io = self._hub.loop.io(fileno, 1)  # 1: readable
        self._waiting = False

    def wait(self, timeout: float) -> bool:
        """True when readable; False after `timeout` seconds or a `wake()`."""
        from gevent.socket import wait

        self._waiting = True
        try:
            wait(self._io, timeout=max(0.0, timeout), timeout_exc=_Woken())
            return True
        except _Woken:
            return False
        finally:
            self._waiting = False

    def wake(self) -> None:
        """End a wait in progress (from any greenlet of this process); no effect otherwise."""
        if self._waiting:
            self._hub.cancel_wait(self._io, _Woken())

    def close(self) -> None:
        self._io.close()
