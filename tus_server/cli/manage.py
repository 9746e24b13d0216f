"""`ls` and `rm`: what the web page does besides transfers, for a terminal or a script.

ls  GET /files page by page (`next` links) and prints one row per upload, newest first, sizes
    in the CLI's binary units. `-q` prints only the ids, for `rm $(tus-minio ls -q)`.
rm  tus termination: DELETE <upload URL> with `Tus-Resumable: 1.0.0`. Every target is tried;
    the exit status is 1 when any of them failed.
"""
from __future__ import annotations

import argparse
from typing import Optional

import requests

from .common import (TUS, CliError, describe, endpoint_url, format_bytes, http_failure,
                     new_session, say, upload_url, with_retries)

def fetch_uploads(args: argparse.Namespace, session: requests.Session) -> list[dict]:
    url: Optional[str] = endpoint_url(args.endpoint) + f"?page=1&per_page={args.page_size}"
    uploads: list[dict] = []
    while url:
        page = with_retries(lambda: get_json(session, url, args.timeout), args)
        if not isinstance(page, dict) or not isinstance(page.get("uploads"), list):
            raise CliError(f"GET {url} did not answer with a list of uploads")
        uploads.extend(item for item in page["uploads"] if isinstance(item, dict))
        url = page.get("next")
    return uploads


def get_json(session: requests.Session, url: str, timeout: float):
    try:
        response = session.get(url, headers={"Accept": "application/json"}, timeout=(10, timeout))
    except requests.RequestException as exc:
        raise CliError(f"GET {url}: {describe(exc)}", transient=True) from None
    if response.status_code != 200:
        raise http_failure(f"GET {url}", response)
    try:
        return response.json()
    except ValueError:
        raise CliError(f"GET {url} answered something that is not JSON") from None


def progress_cell(upload: dict) -> str:
    offset, size = upload.get("offset") or 0, upload.get("size")
    if size is None:
        return f"{format_bytes(offset)} of ?"
    percent = 100.0 if not size else 100.0 * offset / size
    return f"{format_bytes(offset)} ({percent:.0f}%)"


def table(uploads: list[dict]) -> list[str]:
    """Aligned rows: id, filename, size, progress, completed, expires (UTC, ISO 8601)."""
    rows = [("ID", "FILENAME", "SIZE", "RECEIVED", "COMPLETED", "EXPIRES")]
    for upload in uploads:
        size = upload.get("size")
        rows.append((
            str(upload.get("id", "?")),
            " ".join(str(upload.get("filename") or "").split()) or "-",
            format_bytes(size) if size is not None else "?",
            progress_cell(upload),
            "yes" if upload.get("completed") else "no",
            upload.get("expires") or "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3}  # numbers line up on the right
    return ["  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                      for i, cell in enumerate(row)).rstrip() for row in rows]


def run_ls(args: argparse.Namespace) -> int:
    session = new_session(args)
    uploads = fetch_uploads(args, session)
    if args.quiet:
        for upload in uploads:
            print(upload.get("id"))
    elif not uploads:
        say(f"no uploads at {endpoint_url(args.endpoint)}")
    else:
        print("\n".join(table(uploads)), flush=True)
    return 0


def delete(session: requests.Session, url: str, timeout: float) -> None:
    try:
        response = session.delete(url, headers=TUS, timeout=(10, timeout))
    except requests.RequestException as exc:
        raise CliError(f"DELETE {url}: {describe(exc)}", transient=True) from None
    if response.status_code != 204:
        raise http_failure(f"DELETE {url}", response)


def run_rm(args: argparse.Namespace) -> int:
    session = new_session(args)
    failed = 0
    for target in args.targets:
        try:
            url = upload_url(target, args.endpoint)
            with_retries(lambda: delete(session, url, args.timeout), args)
        except CliError as failure:
            say(f"error: {failure}")
            failed += 1
            continue
        print(url, flush=True)  # what was removed, one per line
    return 1 if failed else 0
