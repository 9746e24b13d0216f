"""The server's own verbs, run where the server's settings are (the same environment):

token    mint an HS256 bearer token signed with TUS_JWT_SECRET
link     a signed download link for a finished upload (TUS_LINK_SECRET or TUS_JWT_SECRET)
hooks    `pending | retry ID | drop ID`: the durable hook outbox in MinIO
cleanup  remove expired uploads, once (for cron; a server with TUS_CLEANUP_INTERVAL sweeps too)

They talk to MinIO directly, not to a running server. Only argparse is imported here at start:
each verb imports the server modules it needs when it runs. A setting the server would refuse
ends the verb with status 2 and one line.
"""
from __future__ import annotations

import argparse
import logging
import time

from .common import say

VERBS = ("token", "link", "hooks", "cleanup")


def add_parsers(sub) -> None:
    token = sub.add_parser("token", help="print an HS256 bearer token signed with TUS_JWT_SECRET",
                           description="Print a bearer token for TUS_AUTH=jwt, signed with "
                                       "TUS_JWT_SECRET (env).")
    token.add_argument("--sub", required=True, help="the owner (the token's subject)")
    token.add_argument("--scope", default="upload download",
                       help='space-separated: upload, download, admin (default "upload download")')
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h)")

    link = sub.add_parser("link", help="print a signed download link for a finished upload",
                          description="Print a signed download link, signed with "
                                      "TUS_LINK_SECRET (env; else TUS_JWT_SECRET).")
    link.add_argument("upload_id")
    link.add_argument("--ttl", default=None, help="lifetime: 15m, 1h, 7d (default TUS_LINK_TTL)")
    link.add_argument("--base-url", default=None,
                      help="the server as clients reach it (default http://HOST:PORT)")

    hooks = sub.add_parser("hooks", help="undelivered post-finish/post-terminate hook events",
                           description="The durable hook outbox in MinIO (MINIO_ENDPOINT, "
                                       "TUS_SYSTEM_BUCKET): list it, make an event due now "
                                       "(a running server sends it at its next scan), or "
                                       "delete one unsent.")
    hooks.add_argument("action", choices=("pending", "retry", "drop"))
    hooks.add_argument("event_id", nargs="?", help="for retry and drop (see `hooks pending`)")

    sub.add_parser("cleanup", help="remove expired uploads (and finished ones past TUS_RETENTION, "
                   "and finals whose partials are gone); count each owner's usage again",
                   description="Remove expired uploads once, from the MinIO at MINIO_ENDPOINT "
                               "(TUS_EXPIRATION, TUS_RETENTION), and print their ids.")


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        if args.command == "token":
            return _mint(args, settings)
        if args.command == "link":
            return _link(args, settings)
        if args.command == "hooks":
            return _hooks(settings, args.action, args.event_id)
        return _cleanup(settings)
    except (ConfigError, ValueError) as exc:
        say(f"error: {exc}")
        return 2


def _mint(args, settings) -> int:
    from ..access.tokens import mint_token, parse_ttl

    print(mint_token(settings, args.sub, args.scope, parse_ttl(args.ttl)))
    return 0


def _link(args, settings) -> int:
    from ..access.links import link_query
    from ..access.tokens import parse_ttl
    from ..config import ConfigError
    from ..storage.store import is_upload_id

    if not is_upload_id(args.upload_id):
        raise ValueError(f"{args.upload_id!r} is not an upload id (tus- and 32 hex characters)")
    query = link_query(settings, args.upload_id, parse_ttl(args.ttl) if args.ttl else None)
    if query is None:
        raise ConfigError("a signed link needs TUS_LINK_SECRET or TUS_JWT_SECRET")
    base = (args.base_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    print(f"{base}/files/{args.upload_id}?{query}")
    return 0


def _cleanup(settings) -> int:
    store = _store(settings)
    if not store.healthy():
        say(f"MinIO at {settings.minio_endpoint} is unreachable")
        return 1
    from ..app import attach_usage

    usage = attach_usage(settings, store)
    removed = store.expire(time.time()) + usage.finals.expire_orphans(store)
    owners = usage.rebuild()
    say(f"counted the usage of {owners} owners again")
    print(f"removed {len(removed)} expired uploads")
    for upload_id in removed:
        print(upload_id)
    return 0


def _hooks(settings, action: str, event_id: str | None) -> int:
    """`pending` lists the outbox (id, type, upload, attempts, next attempt, last error);
    `retry` makes an event due now; `drop` deletes it unsent."""
    from ..events.outbox import Outbox

    outbox = Outbox(settings, _store(settings).objects)
    if action == "pending":
        events = outbox.pending()
        for event in events:
            upload = event["body"]["Event"]["Upload"]["ID"]
            due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event["next_attempt"]))
            print(f"{event['id']}  {event['type']:<14} {upload}  attempts={event['attempts']}  "
                  f"next={due}  error={event['last_error'] or '-'}")
        say(f"{len(events)} undelivered hook events")
        return 0
    if not event_id:
        say(f"hooks {action} needs an event id (see `hooks pending`)")
        return 2
    done = outbox.retry(event_id) if action == "retry" else outbox.drop(event_id)
    if not done:
        say(f"no undelivered hook event {event_id}")
        return 1
    print(f"{'retrying' if action == 'retry' else 'dropped'} {event_id}")
    return 0


def _store(settings):
    from ..storage.minio_backend import MinioStore

    return MinioStore(settings)
