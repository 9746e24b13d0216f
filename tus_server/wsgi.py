"""gunicorn entry point: `gunicorn tus_server.wsgi:app`.

A configuration the server refuses (for instance a non-loopback HOST without a TUS_AUTH
choice) ends the whole server with its one-line reason: exit status 4 is gunicorn's "app failed
to load", which stops the arbiter instead of starting the worker again and again.
"""
import sys

from .app import create_app
from .config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"tus-minio: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(4) from None
