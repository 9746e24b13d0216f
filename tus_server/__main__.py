"""`python -m tus_server cleanup` sweeps expired uploads (for cron); `serve` runs a dev server."""
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
    from .app import create_app

    app = create_app(settings)
    app.run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
