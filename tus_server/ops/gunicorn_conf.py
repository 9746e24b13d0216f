"""gunicorn settings for tus-minio: `tus-minio serve` runs
`gunicorn tus_server.wsgi:app -c python:tus_server.ops.gunicorn_conf`.

Workers (`TUS_WORKER`):
* `gevent` (the default): a greenlet per connection (`gevent_worker.py`). A connection that
  waits, for its headers, its body's next bytes or MinIO, holds no thread; `WORKERS` processes
  each serve up to `TUS_MAX_CONNECTIONS` connections, `TUS_HEADER_TIMEOUT` bounds how long a
  request's headers may take, and `THREADS` is not used.
* `gthread`: gunicorn's threaded worker, the earlier default. A PATCH holds a thread while its
  body arrives, so `THREADS` bounds the uploads a worker receives at once (and a connection
  that sends its headers slowly holds a thread too: no header timeout).
Either way an idle upload's chunk buffers are anonymous mappings that take memory only as
bytes arrive, and slow or silent clients are let go after `TUS_BODY_TIMEOUT` seconds without a
byte, keeping what they sent.

On SIGTERM, SIGINT or SIGQUIT a worker first stops every running PATCH (`tus_server.ops.shutdown`):
each stores what arrived, releases its lock and answers 503 with Retry-After; then gunicorn's
own handler runs. A worker that exits deletes its heartbeat object (`worker_exit`), so other
instances take over whatever it still held at once.

Metrics: prometheus_client's multiprocess mode needs `PROMETHEUS_MULTIPROC_DIR` before any
worker imports `tus_server.ops.metrics`; when it is not set, a fresh temporary directory is made
here (in the master, at start) and removed at exit, so counts of an earlier run never leak in.
A worker that exits has its live gauges removed (`child_exit`).

Nothing of the app is imported here (this runs in the master): under gevent, the worker
patches the standard library before it loads the app, and modules imported earlier would keep
unpatched names (`preload_app` stays off for the same reason).
"""
import os
import shutil
import tempfile

WORKER_CLASSES = {"gevent": "tus_server.ops.gevent_worker.TusGeventWorker",
                  "gthread": "tus_server.ops.gunicorn_worker.TusThreadWorker"}
_worker = os.environ.get("TUS_WORKER", "gevent").strip() or "gevent"
if _worker not in WORKER_CLASSES:
    raise SystemExit(f"tus-minio: TUS_WORKER must be one of {', '.join(WORKER_CLASSES)}, "
                     f"got {_worker!r}")
worker_class = WORKER_CLASSES[_worker]
workers = int(os.environ.get("WORKERS", "2"))
threads = int(os.environ.get("THREADS", "128"))
timeout = 300
graceful_timeout = 30
keepalive = 5
control_socket_disable = True

_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="tus-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir

# Imported here, in the master at start (after the variable is set): imported in `child_exit`
# instead, it cost a stopping server about 0.2 s between its last worker's exit and its own.
from prometheus_client import multiprocess  # noqa: E402


def post_worker_init(worker):
    from tus_server.ops.shutdown import install
    from tus_server.storage.heap import keep_freed_memory

    install(worker)
    keep_freed_memory()  # downloads' pieces reuse freed heap instead of fresh pages


def worker_exit(server, worker):
    from tus_server.storage import chores
    from tus_server.storage.instances import stop_all
    from tus_server.storage.kept_locks import release_all

    release_all()  # while the heartbeat still says this worker is alive
    chores.drain(timeout=3.0)  # the last requests' garbage, deleted after their answers
    stop_all()


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
