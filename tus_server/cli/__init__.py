"""`tus-minio` (also `python -m tus_server` and `python -m tus_server.cli`): one command.

A client for any tus server (talks HTTP to the server at --endpoint):
upload    FILE: tus through tuspy, resumable across runs (see upload.py)
download  URL or id: into `<out>.part`, resumed, verified, never replacing a file silently
          (see download.py)
ls, rm    the server's uploads, as the web page shows and deletes them (see manage.py)

The server, and its tools (read the server's settings from the environment, see admin.py):
serve     the production server: gunicorn against the MinIO at MINIO_ENDPOINT (serve.py)
token, link, hooks, cleanup

Every failure ends the process with a non-zero status and one line on stderr, no traceback;
Ctrl-C at any moment ends it with status 130 and one line.

Ctrl-C: a SIGINT before `main` has its handlers in place (while Python imports this package)
would print a KeyboardInterrupt traceback, so the first statement below makes it a quiet exit
with status 130. This module, `common`, `admin` and `serve` import nothing heavy (`serve` reads
the stdlib-only config); each command imports its libraries (requests, tuspy, tqdm; Flask,
minio) only when it runs, inside `main`'s handler.
"""
from __future__ import annotations

import signal


def _interrupted_early(signum, frame):
    raise SystemExit(130)  # no traceback, unlike KeyboardInterrupt


signal.signal(signal.SIGINT, _interrupted_early)

import argparse  # noqa: E402  (after the handler: these imports can be interrupted too)
import os  # noqa: E402
from typing import Optional  # noqa: E402

from . import admin, serve  # noqa: E402
from .common import DEFAULT_ENDPOINT, CliError, parse_size, say  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tus-minio",
        description="A resumable-upload server (tus 1.0 and the IETF draft) that keeps "
                    "uploads in MinIO: `serve` runs it, token, link, hooks and cleanup manage "
                    "it; upload, download, ls and rm are a client for it. Sizes and speeds are "
                    "in binary units (1 MiB = 1024 KiB = 1048576 bytes).",
        epilog="`tus-minio VERB --help` tells more; `serve --help` lists the server's settings.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=os.environ.get("TUS_ENDPOINT", DEFAULT_ENDPOINT),
                        help=f"tus creation URL (env TUS_ENDPOINT; default {DEFAULT_ENDPOINT})")
    common.add_argument("--token", default=os.environ.get("TUS_TOKEN") or None,
                        help="sent as `Authorization: Bearer TOKEN` with every request "
                             "(env TUS_TOKEN, which keeps it out of the process list)")
    common.add_argument("--retries", type=int, default=3,
                        help="attempts after a transient failure (default 3)")
    common.add_argument("--retry-delay", type=float, default=1.0, metavar="SECONDS",
                        help="pause before each retry (default 1)")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or status lines, only the result on stdout "
                             "(ls: only the ids)")
    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                       help="read timeout of each request (default 120)")

    up = sub.add_parser("upload", parents=[common], help="upload a file (resumes a remembered one)")
    up.add_argument("file")
    up.add_argument("--chunk-size", type=parse_size, default=5 * 1024 * 1024, metavar="N",
                    help="bytes per PATCH, e.g. 5M (binary: 5M = 5 MiB; default 5 MiB, the "
                         "server's default chunk size, so PATCHes align with chunks)")
    up.add_argument("--url-store", default=os.environ.get("TUS_CLI_URL_STORE") or None,
                    metavar="PATH",
                    help="JSON file remembering unfinished uploads (env TUS_CLI_URL_STORE; "
                         "default ~/.cache/tus-minio/urls.json)")

    down = sub.add_parser("download", parents=[common, timed],
                          help="download a file, resuming a .part left by an earlier run")
    down.add_argument("url", help="the upload's URL, or its id (joined to --endpoint)")
    down.add_argument("-o", "--output", metavar="FILE",
                      help="where to save it (a directory keeps the server's filename; "
                           "default: the server's filename in the current directory)")
    down.add_argument("--force", action="store_true",
                      help="replace an existing file (once the new one is complete and "
                           "verified) and discard a .part that belongs to something else")
    down.add_argument("--no-verify", action="store_true",
                      help="save the file even when the server gives no Repr-Digest (one it "
                           "does give is still checked)")
    down.add_argument("--digest-wait", type=float, default=30.0, metavar="SECONDS",
                      help="how long to wait for a digest the server is still computing")

    ls = sub.add_parser("ls", parents=[common, timed],
                        help="list the server's uploads, newest first")
    ls.add_argument("--page-size", type=int, default=500, metavar="N",
                    help="uploads asked for per request (default 500, the server's most)")
    rm = sub.add_parser("rm", parents=[common, timed], help="remove uploads (tus termination)")
    rm.add_argument("targets", nargs="+", metavar="URL_OR_ID")

    serve.add_parser(sub)
    admin.add_parsers(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def _run(args: argparse.Namespace) -> int:
    """The command, with its libraries imported only now (the others' never are)."""
    if args.command == "upload":
        from .upload import default_url_store, run

        args.url_store = args.url_store or str(default_url_store())
        return run(args)
    if args.command == "download":
        from .download import run

        return run(args)
    if args.command == "serve":
        return serve.run(args)
    if args.command in admin.VERBS:
        return admin.run(args)
    from .manage import run_ls, run_rm

    return run_ls(args) if args.command == "ls" else run_rm(args)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; the exit status is 0, 1 (failure, one line on stderr) or 130 (Ctrl-C)."""
    resumable = True
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here
        try:
            args = build_parser().parse_args(argv)
            resumable = args.command in ("upload", "download")
            if hasattr(args, "retries"):  # the client verbs
                args.retries = max(0, args.retries)
            return _run(args)
        except CliError as failure:
            say(f"error: {failure}")
            return 1
        except OSError as exc:
            say(f"error: {f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")
            return 1
        except Exception as exc:  # still one line; TUS_CLI_DEBUG=1 shows the traceback
            if os.environ.get("TUS_CLI_DEBUG"):
                raise
            say(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            return 1
        finally:
            # Done (or failing): a late Ctrl-C must not turn the exit into a traceback.
            signal.signal(signal.SIGINT, _interrupted_early)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while we say so
        say("interrupted; run the same command again to resume" if resumable else "interrupted")
        return 130


__all__ = ["main", "build_parser"]
