"""The default worker: gunicorn's gevent worker, with a deadline for request headers and a cap
on open connections that idle ones cannot fill.

A greenlet per connection: a connection that waits (for headers, for body bytes, for MinIO)
holds no thread, only its socket, a small greenlet stack and, for a PATCH, the chunk buffer's
pages its bytes have touched. gunicorn patches the standard library before the app is imported
(`monkey.patch_all()` in `init_process`), so minio's and urllib3's sockets, the writer's putter
threads, the lease keeper, hooks and the outbox all become greenlets (`tus_server.cooperative`).

What gunicorn's gevent worker lacks, and this one adds:
* `TUS_HEADER_TIMEOUT`: a new connection has that many seconds to send a request's headers in
  full (a kept-alive one, gunicorn's `keepalive`); then it is closed without an answer.
* `TUS_MAX_CONNECTIONS` open connections per worker (lowered to what the open-file limit
  allows, which is raised to its hard limit first). Past it, the connection that has waited
  longest for headers (idle between requests, or sending them slowly) is closed to make room:
  so no number of idle or half-sent connections can keep a fresh client out. Only when every
  open connection is in a request does a new one get 503 with `Retry-After`. (It replaces
  gunicorn's `worker_connections`, past which gunicorn's worker just stops accepting.)
"""
from __future__ import annotations

import resource
import socket
import time
from functools import partial

import gevent
from gevent import Timeout
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from ..config import ConfigError, Settings
from .gunicorn_worker import PlainLimitErrors, plain_error

# Connections accepted per turn of the event loop.
ACCEPT_BATCH = 32
# Connections the pool takes past the cap: the ones being answered 503 or closed to make room.
SPARE = 64
# Open files kept for everything but client connections (MinIO connections, logs, metrics).
FD_RESERVE = 256
# Seconds a refused connection is read (and dropped) after its 503, so it reads the answer
# instead of a reset.
REFUSE_DRAIN = 1.0
# Seconds between two warnings that the cap was reached.
WARN_EVERY = 10.0


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer if open files do not allow it: each connection may need a MinIO
    connection beside its own socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 2 * wanted + FD_RESERVE
        target = target if hard == resource.RLIM_INFINITY else min(hard, target)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    return max(1, min(wanted, (soft - FD_RESERVE) // 2))


def storage_is_cooperative() -> bool:
    """Do the MinIO client's connections (urllib3's) use gevent's socket and TLS? They do when
    the app was imported after the patching, as gunicorn's gevent worker does it."""
    import ssl as stdlib_ssl

    import gevent.socket
    import gevent.ssl
    from urllib3.util import connection, ssl_

    context = ssl_.SSLContext or stdlib_ssl.SSLContext
    return connection.socket.socket is gevent.socket.socket and \
        issubclass(context, gevent.ssl.SSLContext)


class _Connection:
    __slots__ = ("client", "served")

    def __init__(self, client):
        self.client = client
        self.served = False  # a request was served on it: it is being kept alive


class TusGeventWorker(PlainLimitErrors, GeventWorker):
    def init_process(self):
        try:
            settings = Settings.from_env()
        except ConfigError:  # the app's import reports it (and stops the server)
            settings = Settings()
        self.header_timeout = settings.header_timeout
        self.retry_after = settings.retry_after
        self.max_connections = connection_cap(settings.max_connections)
        self.worker_connections = self.max_connections + SPARE  # gunicorn's pool size
        self._connections: dict = {}  # greenlet -> _Connection
        self._waiting: dict = {}  # greenlet -> _Connection waiting for headers, oldest first
        self._warned = 0.0
        super().init_process()

    def run(self):
        """gunicorn's gevent loop, but accepting up to `ACCEPT_BATCH` connections per turn of
        the event loop: with several workers gunicorn takes one, and with thousands of busy
        connections a turn is long, so new ones waited seconds in the listen queue."""
        self.log.info("gevent worker: up to %d connections, %g s for request headers; "
                      "MinIO client sockets and TLS cooperative: %s", self.max_connections,
                      self.header_timeout, "yes" if storage_is_cooperative() else "NO")
        tls = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(listener, handle=partial(self.handle, listener),
                                  spawn=Pool(self.worker_connections), **tls)
            server.max_accept = ACCEPT_BATCH
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        for server in servers:  # no new connections; the open ones may finish
            server.close()
        while self._make_room():  # those waiting for a request would only time out
            pass
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and any(
                server.pool.free_count() != server.pool.size for server in servers):
            self.notify()
            gevent.sleep(0.2)
        for server in servers:
            server.stop(timeout=1)

    # ----------------------------------------------------------------- one connection
    def handle(self, listener, client, addr):
        if len(self._connections) >= self.max_connections and not self._make_room():
            self._refuse(client)
            return
        current = gevent.getcurrent()
        self._connections[current] = _Connection(client)
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(current, None)
            self._waiting.pop(current, None)

    def timeout_ctx(self):
        """Called by gunicorn right before it reads a request's headers."""
        current = gevent.getcurrent()
        connection = self._connections.get(current)
        seconds = self.header_timeout
        if connection is not None:
            self._waiting[current] = connection
            if connection.served:
                seconds = self.cfg.keepalive
        return Timeout(seconds, False)  # False: a silent end, gunicorn closes the connection

    def handle_request(self, listener_name, req, sock, addr):
        current = gevent.getcurrent()
        self._waiting.pop(current, None)
        connection = self._connections.get(current)
        if connection is not None:
            connection.served = True
        return super().handle_request(listener_name, req, sock, addr)

    # ----------------------------------------------------------------- the cap
    def _make_room(self) -> bool:
        """Close the connection that has waited longest for headers; False if none waits."""
        while self._waiting:
            current = next(iter(self._waiting))
            connection = self._waiting.pop(current)
            try:
                # Through a duplicate: gevent's own shutdown() would throw EBADF into the waiting
                # greenlet (logged as an error); this way its read just ends, with nothing read,
                # and gunicorn closes the connection without an answer.
                with socket.fromfd(connection.client.fileno(), socket.AF_INET,
                                   socket.SOCK_STREAM) as twin:
                    twin.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
            self._connections.pop(current, None)  # its greenlet ends on its own
            return True
        return False

    def _refuse(self, client) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            self.log.warning("%d connections open, every one in a request: answering 503",
                             len(self._connections))
        answer = plain_error(503, "Service Unavailable",
                             "the server has too many open connections; try again shortly",
                             {"Retry-After": str(self.retry_after)})
        client.setblocking(1)
        try:
            with Timeout(REFUSE_DRAIN, False):
                client.sendall(answer)
                client.shutdown(socket.SHUT_WR)
                while client.recv(64 * 1024):
                    pass
        except OSError:
            pass
        finally:
            client.close()

