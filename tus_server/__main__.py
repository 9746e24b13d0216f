"""`python -m tus_server cleanup` sweeps expired uploads (for cron); `serve` runs a dev server;
`hooks pending|retry <id>|drop <id>` shows and handles undelivered durable hook events."""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .config import Settings
from .minio_backend import MinioStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tus_server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cleanup", help="remove expired uploads (and finished ones past TUS_RETENTION)")
    serve = sub.add_parser("serve", help="development server (use gunicorn in production)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    hooks = sub.add_parser("hooks", help="undelivered post-finish/post-terminate events")
    hooks.add_argument("action", choices=("pending", "retry", "drop"))
    hooks.add_argument("event_id", nargs="?")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    if args.command == "cleanup":
        store = MinioStore(settings)
        if not store.healthy():
            print(f"MinIO at {settings.minio_endpoint} is unreachable", file=sys.stderr)
            return 1
        removed = store.expire(time.time())
        print(f"removed {len(removed)} expired uploads")
        for upload_id in removed:
            print(upload_id)
        return 0
    if args.command == "hooks":
        return hooks_command(settings, args.action, args.event_id)
    from .app import create_app

    app = create_app(settings)
    app.run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
    return 0


def hooks_command(settings: Settings, action: str, event_id: str | None) -> int:
    """`pending` lists the outbox (id, type, upload, attempts, next attempt, last error);
    `retry` makes an event due now (a running server sends it at its next scan); `drop`
    deletes it unsent."""
    from .hooks_outbox import Outbox

    outbox = Outbox(settings, MinioStore(settings).objects)
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


if __name__ == "__main__":
    sys.exit(main())
