"""A worker that is told to stop lets its running uploads store what arrived first.

gunicorn's own handlers either wait for every request to finish (SIGTERM: a client that
trickles keeps the worker alive) or exit at once (SIGINT, SIGQUIT: the request threads then
fail to save, "cannot schedule new futures after interpreter shutdown", and answer 500).
`install` puts a step in front of both: stop every request body in this process (each PATCH
then puts its partial chunk, commits the offset, releases its lock and answers 503 with
Retry-After), wait up to `TUS_SHUTDOWN_TIMEOUT` seconds until they have answered, then hand
over to gunicorn.
"""
from __future__ import annotations

import logging
import signal
import time

from .. import cooperative
from ..config import Settings

log = logging.getLogger("tus_server")


def stop_uploads(timeout: float) -> None:
    from ..http import body  # lazily: ops sits below the HTTP layer
    from ..storage import kept_locks

    started = time.monotonic()
    running = body.stop_all("shutdown")
    if running:
        log.info("shutting down: stopping %d running uploads", running)
    if not body.wait_idle(timeout):
        log.warning("shutting down: uploads still running after %.1f s", timeout)
    if running:
        log.info("shutting down: uploads stored in %.2f s", time.monotonic() - started)
    released = kept_locks.release_all()  # other instances need not ask for these
    if released:
        log.info("shutting down: released %d kept upload locks", released)


def install(worker, settings: Settings | None = None) -> None:
    timeout = (settings or Settings.from_env()).shutdown_timeout

    state = {"waiting": False, "done": False}

    def wrap(original):
        def handler(signum, frame):
            if state["waiting"]:
                # A second signal while the first waits (gunicorn's arbiter forwards SIGINT as
                # SIGQUIT): the first handler finishes the job and then runs gunicorn's own.
                return
            if not state["done"]:
                state["waiting"] = True
                try:
                    stop_uploads(timeout)
                finally:
                    state["waiting"], state["done"] = False, True
            original(signum, frame)
        return handler

    def deferred(handler):
        # Under gevent a signal handler may run in the event loop itself, where nothing may
        # wait: the waiting part runs in a greenlet of its own (as gunicorn's handle_quit does).
        if not cooperative.active():
            return handler
        import gevent

        return lambda signum, frame: gevent.spawn(handler, signum, frame)

    signal.signal(signal.SIGTERM, deferred(wrap(worker.handle_exit)))
    signal.signal(signal.SIGINT, deferred(wrap(worker.handle_quit)))
    signal.signal(signal.SIGQUIT, deferred(wrap(worker.handle_quit)))
