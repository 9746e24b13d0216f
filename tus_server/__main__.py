"""`python -m tus_server cleanup` sweeps expired uploads (for cron); `serve` runs a dev server;
`token` mints a bearer token and `link` a signed download link, with the configured secrets;
`hooks pending|retry <id>|drop <id>` shows and handles undelivered durable hook events."""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .config import ConfigError, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tus_server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cleanup", help="remove expired uploads (and finished ones past TUS_RETENTION, "
                   "and finals whose partials are gone); count each owner's usage again")
    serve = sub.add_parser("serve", help="development server (use gunicorn in production)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    token = sub.add_parser("token", help="print an HS256 bearer token signed with TUS_JWT_SECRET")
    token.add_argument("--sub", required=True, help="the owner (the token's subject)")
    token.add_argument("--scope", default="upload download",
                       help='space-separated: upload, download, admin (default "upload download")')
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h)")
    link = sub.add_parser("link", help="print a signed download link for a finished upload")
    link.add_argument("upload_id")
    link.add_argument("--ttl", default=None, help="lifetime: 15m, 1h, 7d (default TUS_LINK_TTL)")
    link.add_argument("--base-url", default=None,
                      help="the server as clients reach it (default http://HOST:PORT)")
    hooks = sub.add_parser("hooks", help="undelivered post-finish/post-terminate events")
    hooks.add_argument("action", choices=("pending", "retry", "drop"))
    hooks.add_argument("event_id", nargs="?")
    return parser


def _mint(args, settings: Settings) -> int:
    from .access.tokens import mint_token, parse_ttl

    print(mint_token(settings, args.sub, args.scope, parse_ttl(args.ttl)))
    return 0


def _link(args, settings: Settings) -> int:
    from .access.links import link_query
    from .access.tokens import parse_ttl
    from .storage.store import is_upload_id

    if not is_upload_id(args.upload_id):
        raise ValueError(f"{args.upload_id!r} is not an upload id (tus- and 32 hex characters)")
    query = link_query(settings, args.upload_id, parse_ttl(args.ttl) if args.ttl else None)
    if query is None:
        raise ConfigError("a signed link needs TUS_LINK_SECRET or TUS_JWT_SECRET")
    base = (args.base_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    print(f"{base}/files/{args.upload_id}?{query}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        if args.command == "token":
            return _mint(args, settings)
        if args.command == "link":
            return _link(args, settings)
        if args.command == "cleanup":
            return _cleanup(settings)
        if args.command == "hooks":
            return hooks_command(settings, args.action, args.event_id)
        from .app import create_app

        app = create_app(settings)
    except (ConfigError, ValueError) as exc:
        print(f"tus_server: {exc}", file=sys.stderr)
        return 2
    app.run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
    return 0


def _cleanup(settings: Settings) -> int:
    store = _store(settings)
    if not store.healthy():
        print(f"MinIO at {settings.minio_endpoint} is unreachable", file=sys.stderr)
        return 1
    from .app import attach_usage

    usage = attach_usage(settings, store)
    removed = store.expire(time.time()) + usage.finals.expire_orphans(store)
    print(f"removed {len(removed)} expired uploads")
    for upload_id in removed:
        print(upload_id)
    owners = usage.rebuild()
    print(f"counted the usage of {owners} owners again", file=sys.stderr)
    return 0


def hooks_command(settings: Settings, action: str, event_id: str | None) -> int:
    """`pending` lists the outbox (id, type, upload, attempts, next attempt, last error);
    `retry` makes an event due now (a running server sends it at its next scan); `drop`
    deletes it unsent."""
    from .events.outbox import Outbox

    outbox = Outbox(settings, _store(settings).objects)
    if action == "pending":
        events = outbox.pending()
        for event in events:
            upload = event["body"]["Event"]["Upload"]["ID"]
            due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["next_attempt"]))
            print(f"{event['id']}  {event['type']:<14} {upload}  attempts={event['attempts']}  "
                  f"next={due}  error={event['last_error'] or '-'}")
        print(f"{len(events)} undelivered hook events", file=sys.stderr)
        return 0
    if not event_id:
        print(f"hooks {action} needs an event id (see `hooks pending`)", file=sys.stderr)
        return 2
    done = outbox.retry(event_id) if action == "retry" else outbox.drop(event_id)
    if not done:
        print(f"no undelivered hook event {event_id}", file=sys.stderr)
        return 1
    print(f"{'retrying' if action == 'retry' else 'dropped'} {event_id}")
    return 0


def _store(settings: Settings):
    from .storage.minio_backend import MinioStore

    return MinioStore(settings)


if __name__ == "__main__":
    sys.exit(main())
