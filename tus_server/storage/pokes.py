"""Pokes: a hand-over request told at once to a holder in another process on this machine.

A request that finds an upload held by another process writes a `release` generation naming
the holder (`lease.py`), and the holder's keeper sees it at its next look, about a second
later. That second is most of a hand-over, and with kept locks (`kept_locks.py`) it would be
paid whenever a client's next PATCH lands on another gunicorn worker of the same instance.
So every process that has a heartbeat also listens on a UNIX datagram socket named by its
instance id,

    $TMPDIR/tus-minio-pokes/<instance id>

and a request that writes a `release` generation sends the upload id to the holder's socket,
when it is on this machine: the holder's keeper looks at the lock at once. A poke carries no
authority: it only makes the keeper look sooner, and what the look finds decides. A holder on
another machine (no such socket here) is found by its keeper's own look, as before.
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from typing import Callable, Optional

log = logging.getLogger("tus_server.store")

DIRECTORY = os.path.join(tempfile.gettempdir(), "tus-minio-pokes")
# An upload id is "tus-" and 32 hex digits; anything longer is not a poke.
MOST_BYTES = 128


# Set by lease.py: makes the keepers of one upload's leases in this process look at once.
handler: Optional[Callable[[str], None]] = None


def dispatch(upload_id: str) -> None:
    if handler is not None and upload_id:
        handler(upload_id)


def _path(instance: str) -> str:
    return os.path.join(DIRECTORY, instance)


def send(instance: Optional[str], upload_id: str) -> bool:
    """Poke `instance` about `upload_id`; False when it has no socket here (or is gone)."""
    if not instance or os.path.sep in instance:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(upload_id.encode(), _path(instance))
        return True
    except OSError:  # no such socket (another machine), a dead process's, or a full queue
        return False


class Listener:
    """This process's socket; `on_poke(upload_id)` is called from its thread."""

    def __init__(self, instance: str, on_poke: Callable[[str], None]):
        self.path = _path(instance)
        self.on_poke = on_poke
        self.pid = os.getpid()
        os.makedirs(DIRECTORY, exist_ok=True)
        _remove_dead_sockets()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="tus-pokes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            try:
                data = self._sock.recv(MOST_BYTES)
            except OSError:  # closed by `stop`
                return
            try:
                self.on_poke(data.decode("ascii", "replace"))
            except Exception:  # a poke only hurries a look; never let it end the thread
                log.exception("poke not handled")

    def stop(self) -> None:
        self._stopped = True
        if os.getpid() == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        try:
            self._sock.close()
        except OSError:
            pass


def _remove_dead_sockets() -> None:
    """Sockets of processes that died without removing theirs (SIGKILL): nobody answers."""
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return
    for name in names:
        path = os.path.join(DIRECTORY, name)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(b"", path)
        except ConnectionRefusedError:
            try:
                os.unlink(path)
            except OSError:
                pass
        except OSError:
            continue
