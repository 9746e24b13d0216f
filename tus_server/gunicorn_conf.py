"""gunicorn settings for tus-minio (`gunicorn -c python:tus_server.gunicorn_conf ...`).

Threaded workers: a PATCH holds a thread while its body arrives, so `THREADS` bounds the
uploads a worker receives at once; an idle thread costs little (its chunk buffers are
anonymous mappings that take memory only as bytes arrive). Slow or silent clients are let go
after `TUS_BODY_TIMEOUT` seconds without a byte, keeping what they sent.

On SIGTERM, SIGINT or SIGQUIT a worker first stops every running PATCH (`tus_server.shutdown`):
each stores what arrived, releases its lock and answers 503 with Retry-After; then gunicorn's
own handler runs.
"""
import os

worker_class = "tus_server.gunicorn_worker.TusThreadWorker"
workers = int(os.environ.get("WORKERS", "2"))
threads = int(os.environ.get("THREADS", "128"))
timeout = 300
graceful_timeout = 30
keepalive = 5
control_socket_disable = True


def post_worker_init(worker):
    from tus_server.shutdown import install

    install(worker)
