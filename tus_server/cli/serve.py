"""`tus-minio serve`: the production server, gunicorn with the project's settings
(`tus_server.ops.gunicorn_conf`: gevent workers, graceful PATCH shutdown, metrics), the
same command `make run` runs, against the MinIO at MINIO_ENDPOINT. It never starts MinIO.

The process becomes gunicorn (`exec`): signals, the exit status and the process id are
gunicorn's, as a service manager expects. Before that it reads the settings once, so that a
value the server would refuse (a bad number, an open server without a TUS_AUTH choice, an S3
server without conditional writes) ends it with one line and status 2 instead of a worker that
fails to boot.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

from ..config import ConfigError, Settings, require_auth_choice
from .common import say

# The settings a deployment decides, for `serve --help`; every one is in docs/configuration.md.
_DEFAULTS = Settings()
SETTINGS_HELP = [
    ("HOST", "address to listen on (--host)", _DEFAULTS.host),
    ("PORT", "port to listen on (--port)", str(_DEFAULTS.port)),
    ("WORKERS", "gunicorn worker processes (--workers)", "2"),
    ("TUS_WORKER", "gevent: a greenlet per connection; gthread: threads", "gevent"),
    ("TUS_MAX_CONNECTIONS", "gevent: open connections per worker", str(_DEFAULTS.max_connections)),
    ("THREADS", "gthread: threads per worker, the uploads it receives at once (--threads)", "128"),
    ("MINIO_ENDPOINT", "host:port of MinIO (or its balancer)", _DEFAULTS.minio_endpoint),
    ("MINIO_ACCESS_KEY", "MinIO access key", _DEFAULTS.minio_access_key),
    ("MINIO_SECRET_KEY", "MinIO secret key", _DEFAULTS.minio_secret_key),
    ("MINIO_SECURE", "1: talk HTTPS to MinIO", "0"),
    ("TUS_LAYOUT", "bucket: a bucket per upload; prefix: all under TUS_BUCKET", _DEFAULTS.layout),
    ("TUS_AUTH", "jwt: bearer tokens; none: open (required when HOST is not loopback)", "unset"),
    ("TUS_JWT_SECRET", "HS256 key for tokens (or TUS_JWT_PUBLIC_KEY for RS256/ES256)", "-"),
    ("TUS_CORS_ORIGINS", "origins of pages on other sites that may upload", "none"),
    ("TUS_BEHIND_PROXY", "1: trust one proxy's X-Forwarded-* headers", "0"),
    ("TUS_CHUNK_SIZE", "bytes per chunk object", str(_DEFAULTS.chunk_size)),
    ("TUS_MAX_SIZE", "largest upload in bytes (0: no limit)", str(_DEFAULTS.max_size)),
    ("TUS_EXPIRATION", "seconds an unfinished upload lives (0: forever)", str(_DEFAULTS.expiration)),
    ("TUS_HOOKS_URL", "where tusd-style HTTP hooks are sent", "none"),
    ("TUS_METRICS", "0: no /metrics", "1" if _DEFAULTS.metrics else "0"),
    ("TUS_LOG_FORMAT", "text or json", _DEFAULTS.log_format),
]


def _settings_epilog() -> str:
    width = max(len(name) for name, _, _ in SETTINGS_HELP)
    rows = [f"  {name:<{width}}  {meaning} [{default}]" for name, meaning, default in SETTINGS_HELP]
    notes = textwrap.fill(
        "Every setting, one row each: docs/configuration.md. MinIO must already run at "
        "MINIO_ENDPOINT (from a checkout, `make minio` starts a local one); until it answers, "
        "/healthz answers 503.", 79)
    return "settings (environment, [default]):\n" + "\n".join(rows) + "\n\n" + notes


def add_parser(sub) -> None:
    serve = sub.add_parser(
        "serve", help="run the server (gunicorn) against the MinIO at MINIO_ENDPOINT",
        description="Run the tus-minio server: gunicorn with the project's worker settings,\n"
                    "the page at /, the tus endpoint at /files/.",
        epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", help=f"address to listen on (env HOST; default {_DEFAULTS.host})")
    serve.add_argument("--port", type=int,
                       help=f"port to listen on (env PORT; default {_DEFAULTS.port})")
    serve.add_argument("--workers", type=int, help="worker processes (env WORKERS; default 2)")
    serve.add_argument("--threads", type=int,
                       help="TUS_WORKER=gthread: threads per worker (env THREADS; default 128)")
    serve.add_argument("--no-access-log", action="store_true",
                       help="do not log every request on stdout")
    serve.add_argument("gunicorn_args", nargs=argparse.REMAINDER, metavar="-- GUNICORN_OPTION",
                       help="after --: more gunicorn options, e.g. -- --certfile c.pem "
                            "--keyfile k.pem")


def bind_address(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_command(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """The gunicorn command line for `args`; `env` gets the flags' values (the app and
    gunicorn_conf read them from there). Raises ConfigError for settings the server refuses."""
    flags = {"HOST": args.host, "PORT": args.port, "WORKERS": args.workers,
             "THREADS": args.threads}
    env.update({name: str(value) for name, value in flags.items() if value is not None})
    for name in ("WORKERS", "THREADS"):
        value = env.get(name, "").strip()
        if value and (not value.isdigit() or int(value) < 1):
            raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
    settings = Settings.from_env(env)
    require_auth_choice(settings)
    extra = list(args.gunicorn_args)
    if extra and extra[0] != "--":
        raise ConfigError(f"unrecognized argument {extra[0]!r} (gunicorn's own options go "
                          "after --)")
    extra = extra[1:]
    command = [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app",
               "--bind", bind_address(settings.host, settings.port),
               "-c", "python:tus_server.ops.gunicorn_conf"]
    if not args.no_access_log:
        command += ["--access-logfile", "-"]
    return command + extra


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    try:
        command = gunicorn_command(args, env)
    except ConfigError as exc:
        say(f"error: {exc}")
        return 2
    # An S3 server without conditional writes (storage/probe.py) is refused here too, in one
    # line, rather than by every worker as it boots. (Imported here: `--help` stays fast.)
    from ..storage.probe import refusal_at_start

    refused = refusal_at_start(Settings.from_env(env))
    if refused:
        say(f"error: {refused}")
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
    return 0  # not reached: this process is gunicorn now
