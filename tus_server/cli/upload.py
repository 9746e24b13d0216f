"""`upload FILE`: tus through tuspy, resumable across runs.

The upload URL is remembered in a tuspy URL store (a JSON file, `~/.cache/tus-minio/urls.json`
unless `--url-store`/`TUS_CLI_URL_STORE` say otherwise), keyed by the endpoint, the file's path,
size, modification time and first 64 KiB, so running the same command again after Ctrl-C or a
crash continues where the server stopped. Prints the upload URL, which is also the download
URL, on stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import mimetypes
import os
import time
from pathlib import Path

from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.storage import filestorage

from .common import (TRANSIENT_STATUS, CliError, auth_headers, deferred_interrupt, describe,
                     endpoint_url, format_bytes, say)
from .progress import Progress


def default_url_store() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tus-minio" / "urls.json"


class FileFingerprint:
    """tuspy fingerprint naming one file version at one endpoint.

    tuspy's own (size + MD5 of the first 64 KiB) would resume a different file of the same size
    and head, or send a file to another server's upload; the path, the modification time and
    the endpoint rule that out.
    """

    BLOCK_SIZE = 65536

    def __init__(self, endpoint: str, path: str):
        self.endpoint = endpoint
        self.path = os.path.realpath(path)

    def get_fingerprint(self, fs) -> str:
        head = hashlib.md5(fs.read(self.BLOCK_SIZE)).hexdigest()
        stat = os.stat(self.path)
        return (f"endpoint:{self.endpoint}--path:{self.path}--size:{stat.st_size}"
                f"--mtime:{stat.st_mtime_ns}--md5:{head}")


class UrlStore(filestorage.FileStorage):
    """tuspy's URL store, whose writes a Ctrl-C cannot cut in half.

    TinyDB rewrites the JSON file in place (seek, write, truncate): interrupted between the
    write and the truncate, it leaves a file the next run cannot parse, and the upload it was
    meant to resume would start over.
    """

    def set_item(self, key: str, value: str):
        with deferred_interrupt():
            return super().set_item(key, value)

    def remove_item(self, key: str):
        with deferred_interrupt():
            return super().remove_item(key)


def tus_failure(what: str, exc: Exception) -> CliError:
    """A tuspy error as one line: the server's status and text, or the network reason."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        content = getattr(exc, "response_content", b"") or b""
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        detail = content.strip().splitlines()[0][:300] if content.strip() else ""
        return CliError(f"{what}: server answered {status}" + (f": {detail}" if detail else ""),
                        transient=status in TRANSIENT_STATUS)
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    return CliError(f"{what}: {describe(cause)}", transient=True)


def open_url_store(location: str) -> UrlStore:
    store_path = Path(location).expanduser()
    try:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        url_storage = UrlStore(str(store_path))
        url_storage.get_item("")  # reads the file now, so a damaged store fails here
    except (OSError, ValueError) as exc:
        raise CliError(f"URL store {store_path} is unusable ({exc}); "
                       "remove it or pass --url-store") from None
    return url_storage


def run(args: argparse.Namespace) -> int:
    path = args.file
    if not os.path.isfile(path):
        raise CliError(f"{path}: not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    endpoint_url(args.endpoint)  # a one-line failure for a malformed endpoint
    size = os.path.getsize(path)
    name = os.path.basename(path)
    file_type = mimetypes.guess_type(name)[0] or "application/octet-stream"

    url_storage = open_url_store(args.url_store)
    fingerprinter = FileFingerprint(args.endpoint, path)
    client = tus_client.TusClient(args.endpoint, headers=auth_headers(args.token))

    def make_uploader():
        return client.uploader(
            file_path=path, chunk_size=args.chunk_size,
            metadata={"filename": name, "filetype": file_type},
            store_url=True, url_storage=url_storage, fingerprinter=fingerprinter,
            retries=args.retries, retry_delay=args.retry_delay)

    def forget() -> None:
        with open(path, "rb") as stream:
            url_storage.remove_item(fingerprinter.get_fingerprint(stream))

    try:
        try:
            uploader = make_uploader()  # asks the server for the offset of a remembered URL
        except TusCommunicationError as exc:
            if getattr(exc, "status_code", None) not in (403, 404, 410):
                raise tus_failure("could not resume the remembered upload", exc) from None
            # The remembered upload is gone (expired, terminated, another server): start anew.
            forget()
            say(f"the remembered upload is gone (server answered {exc.status_code}); starting over")
            uploader = make_uploader()

        if uploader.url is None:
            uploader.set_url(create_with_retries(uploader, args))
            uploader.offset = 0
        elif not args.quiet:
            say(f"resuming {uploader.url} at byte {uploader.offset} of {size} "
                f"({format_bytes(uploader.offset)} of {format_bytes(size)})")

        with Progress(size, uploader.offset, name, args.quiet) as bar:
            while uploader.offset < size:
                before = uploader.offset
                try:
                    uploader.upload_chunk()
                except TusCommunicationError as exc:
                    raise tus_failure(f"upload of {name} stopped at byte {uploader.offset} "
                                      "(run the same command again to resume)", exc) from None
                bar.update(uploader.offset - before)
        forget()  # finished: the store keeps only uploads that can still be resumed
    finally:
        url_storage.close()
    print(uploader.url, flush=True)
    return 0


def create_with_retries(uploader, args: argparse.Namespace) -> str:
    """POST the upload; tuspy retries PATCHes only, so creation gets the same patience here."""
    attempt = 0
    while True:
        try:
            return uploader.create_url()
        except TusCommunicationError as exc:
            failure = tus_failure(f"could not create the upload at {args.endpoint}", exc)
            if not failure.transient or attempt >= args.retries:
                raise failure from None
            attempt += 1
            time.sleep(args.retry_delay)
