"""The transfer client: `python -m tus_server.cli upload FILE` and `... download URL`.

upload   tus through tuspy. The upload URL is remembered in a tuspy URL store (a JSON file,
         `~/.cache/tus-minio/urls.json` unless `--url-store`/`TUS_CLI_URL_STORE` say otherwise),
         keyed by the endpoint, the file's path, size, modification time and first 64 KiB, so
         running the same command again after Ctrl-C or a crash continues where the server
         stopped. Prints the upload URL, which is also the download URL, on stdout.
download Streams into `<out>.part` and keeps the response's ETag in `<out>.part.etag`. Run again
         after an interruption, it asks for `Range: bytes=<have>-` with `If-Range: <etag>`, so a
         file that changed on the server is sent whole (200) and started over, never spliced.
         The SHA-256 of the whole file (the bytes already in the .part, then the new ones) must
         equal the server's `Repr-Digest` before the .part is renamed into place.

Every failure ends the process with a non-zero status and one line on stderr, no traceback.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import mimetypes
import os
import re
import sys
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import requests

DEFAULT_ENDPOINT = "http://127.0.0.1:5000/files/"
DEFAULT_CHUNK_SIZE = 5 * 1024 * 1024  # the server's default chunk size, so PATCHes align
PIECE = 1024 * 1024  # bytes read from the disk at a time
# Bytes read from the network at a time: when a transfer breaks, the piece being read is lost,
# so it stays small and the .part keeps nearly all that arrived.
NET_PIECE = 64 * 1024
TRANSIENT_STATUS = {429, 502, 503, 504}


class CliError(Exception):
    """A failure reported as one line; `transient` ones are worth another attempt."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(" ".join(message.split()))
        self.transient = transient


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def describe(exc: BaseException) -> str:
    """A short, single-line reason for a network failure (requests' texts nest three deep)."""
    text = str(exc)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno_text:
        return errno_text.group(1).strip()
    for marker, reason in (("timed out", "timed out"), ("IncompleteRead", "connection closed early"),
                           ("Connection broken", "connection broken"),
                           ("Connection aborted", "connection aborted"),
                           ("ended prematurely", "connection closed early")):
        if marker in text:
            return reason
    return text.splitlines()[0][:200] if text else type(exc).__name__


def server_text(response: requests.Response) -> str:
    """The first line of a short error body (the server answers errors in plain text)."""
    try:
        text = response.text.strip()
    except requests.RequestException:
        text = ""
    return text.splitlines()[0][:300] if text else ""


def http_failure(what: str, response: requests.Response) -> CliError:
    detail = server_text(response)
    return CliError(f"{what} answered {response.status_code} {response.reason}"
                    + (f": {detail}" if detail else ""),
                    transient=response.status_code in TRANSIENT_STATUS)


def parse_size(text: str) -> int:
    """`5242880`, `64K`, `5M`, `5MiB`, `1G` (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 5242880, 64K or 5M")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


def default_url_store() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tus-minio" / "urls.json"


# ------------------------------------------------------------------------------------ upload
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


def _tus_failure(what: str, exc: Exception) -> CliError:
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


def upload(args: argparse.Namespace) -> int:
    from tusclient import client as tus_client
    from tusclient.exceptions import TusCommunicationError
    from tusclient.storage import filestorage
    from tqdm import tqdm

    path = args.file
    if not os.path.isfile(path):
        raise CliError(f"{path}: not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    size = os.path.getsize(path)
    name = os.path.basename(path)
    file_type = mimetypes.guess_type(name)[0] or "application/octet-stream"

    store_path = Path(args.url_store).expanduser()
    try:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        url_storage = filestorage.FileStorage(str(store_path))
        url_storage.get_item("")  # reads the file now, so a damaged store fails here
    except (OSError, ValueError) as exc:
        raise CliError(f"URL store {store_path} is unusable ({exc}); "
                       "remove it or pass --url-store") from None
    fingerprinter = FileFingerprint(args.endpoint, path)
    client = tus_client.TusClient(args.endpoint)

    def make_uploader():
        return client.uploader(
            file_path=path, chunk_size=args.chunk_size,
            metadata={"filename": name, "filetype": file_type},
            store_url=True, url_storage=url_storage, fingerprinter=fingerprinter,
            retries=args.retries, retry_delay=args.retry_delay)

    try:
        try:
            uploader = make_uploader()  # asks the server for the offset of a remembered URL
        except TusCommunicationError as exc:
            if getattr(exc, "status_code", None) not in (403, 404, 410):
                raise _tus_failure("could not resume the remembered upload", exc) from None
            # The remembered upload is gone (expired, terminated, another server): start anew.
            with open(path, "rb") as stream:
                url_storage.remove_item(fingerprinter.get_fingerprint(stream))
            say(f"the remembered upload is gone (server answered {exc.status_code}); starting over")
            uploader = make_uploader()

        if uploader.url is None:
            uploader.set_url(_create_with_retries(uploader, args))
            uploader.offset = 0
        elif not args.quiet:
            say(f"resuming {uploader.url} at byte {uploader.offset} of {size}")

        with tqdm(total=size, initial=uploader.offset, unit="B", unit_scale=True,
                  unit_divisor=1024, file=sys.stderr, desc=name[:30],
                  disable=True if args.quiet else None) as bar:
            while uploader.offset < size:
                before = uploader.offset
                try:
                    uploader.upload_chunk()
                except TusCommunicationError as exc:
                    raise _tus_failure(f"upload of {name} stopped at byte {uploader.offset} "
                                       "(run the same command again to resume)", exc) from None
                bar.update(uploader.offset - before)
        # Finished: the store keeps only uploads that can still be resumed.
        with open(path, "rb") as stream:
            url_storage.remove_item(fingerprinter.get_fingerprint(stream))
    finally:
        url_storage.close()
    print(uploader.url, flush=True)
    return 0


def _create_with_retries(uploader, args: argparse.Namespace) -> str:
    """POST the upload; tuspy retries PATCHes only, so creation gets the same patience here."""
    from tusclient.exceptions import TusCommunicationError

    attempt = 0
    while True:
        try:
            return uploader.create_url()
        except TusCommunicationError as exc:
            failure = _tus_failure(f"could not create the upload at {args.endpoint}", exc)
            if not failure.transient or attempt >= args.retries:
                raise failure from None
            attempt += 1
            time.sleep(args.retry_delay)


# ------------------------------------------------------------------------------------ download
def parse_repr_digest(value: Optional[str]) -> Optional[bytes]:
    """The SHA-256 in an RFC 9530 `Repr-Digest: sha-256=:<base64>:` field, if there is one."""
    if not value:
        return None
    for member in value.split(","):
        key, _, item = member.strip().partition("=")
        if key.strip().lower() == "sha-256" and item.startswith(":") and item.endswith(":"):
            try:
                digest = base64.b64decode(item[1:-1], validate=True)
            except ValueError:
                return None
            return digest if len(digest) == 32 else None
    return None


def name_from_response(response: requests.Response, fallback: str) -> str:
    """The Content-Disposition filename (filename* preferred), reduced to a safe base name."""
    from werkzeug.http import parse_options_header

    from .tus_headers import safe_filename

    _, options = parse_options_header(response.headers.get("Content-Disposition", ""))
    name = safe_filename(options.get("filename"), fallback)  # Werkzeug decodes filename*
    return fallback if name in (".", "..") else name


def _content_range(response: requests.Response) -> tuple[int, int]:
    """(first byte, complete length) of a 206's `Content-Range: bytes a-b/n`."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", ""))
    if not match:
        raise CliError(f"the server sent 206 with an unusable Content-Range "
                       f"{response.headers.get('Content-Range')!r}")
    return int(match.group(1)), int(match.group(3))


class Download:
    """One attempt at fetching `url` into `out` (resuming from `<out>.part` when it can)."""

    def __init__(self, args: argparse.Namespace, session: requests.Session):
        self.args = args
        self.url = args.url
        self.session = session
        self.timeout = (10, args.timeout)

    def get(self, headers: dict) -> requests.Response:
        try:
            response = self.session.get(self.url, headers=headers, stream=True,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise CliError(f"GET {self.url}: {describe(exc)}",
                           transient=not isinstance(exc, ValueError)) from None  # bad URL
        return response

    def fail_unless(self, response: requests.Response, *ok: int) -> None:
        if response.status_code not in ok:
            failure = http_failure(f"GET {self.url}", response)  # reads the (short) error text
            response.close()
            raise failure

    def run(self) -> str:
        fallback = urlparse(self.url).path.rstrip("/").rsplit("/", 1)[-1] or "download"
        out = self.args.output
        first = None
        if out is None or os.path.isdir(out):
            # The name comes from the server; this plain GET is used unless a .part can resume.
            first = self.get({})
            self.fail_unless(first, 200)
            name = name_from_response(first, fallback)
            out = os.path.join(out, name) if out else name
        part, etag_path = out + ".part", out + ".part.etag"
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        saved_etag = _read_text(etag_path)

        response = None
        if have and saved_etag and (first is None or first.headers.get("ETag") == saved_etag):
            if first is not None:
                first.close()
                first = None
            response = self.get({"Range": f"bytes={have}-", "If-Range": saved_etag})
            if response.status_code == 416:
                response.close()
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    # The .part already holds the whole file: only the digest is left to check.
                    return self.finish(out, part, etag_path, have, saved_etag, None)
                say("the .part is longer than the file on the server; starting over")
                response = None
            elif response.status_code == 200:
                say(f"{os.path.basename(out)} changed on the server since the .part began "
                    "(ETag); starting over")
        elif have:
            say("the .part cannot be resumed (no ETag saved, or the file changed); starting over")
        if response is None:
            response = first or self.get({})
        self.fail_unless(response, 200, 206)
        return self.receive(out, part, etag_path, response)

    def receive(self, out: str, part: str, etag_path: str, response: requests.Response) -> str:
        from tqdm import tqdm

        etag = response.headers.get("ETag")
        hasher = hashlib.sha256()
        if response.status_code == 206:
            start, total = _content_range(response)
            have = os.path.getsize(part)
            if start != have:
                response.close()
                raise CliError(f"asked to resume at byte {have}, the server sent from {start}")
            if not self.args.quiet:
                say(f"resuming at byte {start} of {total}")
            with open(part, "rb") as existing:  # the bytes already here count in the digest
                for piece in iter(lambda: existing.read(PIECE), b""):
                    hasher.update(piece)
            mode = "ab"
        else:
            start = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        received = 0
        try:
            with open(part, mode) as sink, \
                    tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                         file=sys.stderr, desc=os.path.basename(out)[:30],
                         disable=True if self.args.quiet else None) as bar:
                # The ETag goes next to the .part only once the .part holds this file's bytes.
                if etag:
                    _write_text(etag_path, etag)
                elif os.path.exists(etag_path):
                    os.remove(etag_path)
                for piece in response.iter_content(NET_PIECE):
                    sink.write(piece)
                    hasher.update(piece)
                    received += len(piece)
                    bar.update(len(piece))
        except requests.RequestException as exc:
            raise CliError(f"download of {self.url} broke off at byte {start + received}"
                           f"{'' if total is None else f' of {total}'} ({describe(exc)}); "
                           "run the same command again to resume", transient=True) from None
        finally:
            response.close()
        if total is not None and start + received != total:
            raise CliError(f"download of {self.url} broke off at byte {start + received} of "
                           f"{total}; run the same command again to resume", transient=True)
        return self.finish(out, part, etag_path, start + received, etag,
                           response.headers.get("Repr-Digest"), hasher=hasher)

    def finish(self, out: str, part: str, etag_path: str, size: int, etag: Optional[str],
               repr_digest: Optional[str], hasher=None) -> str:
        expected = parse_repr_digest(repr_digest)
        if expected is None and not self.args.no_verify:
            expected = self.wait_for_digest(etag)
            if expected is None:
                raise CliError(f"the server gave no Repr-Digest for {self.url} within "
                               f"{self.args.digest_wait:g}s, so the file cannot be verified; "
                               "run again later, or pass --no-verify")
        if expected is not None:  # checked even with --no-verify when the server sent one
            if hasher is None:  # nothing was fetched: hash the .part as it is
                hasher = hashlib.sha256()
                with open(part, "rb") as existing:
                    for piece in iter(lambda: existing.read(PIECE), b""):
                        hasher.update(piece)
            if hasher.digest() != expected:
                os.remove(part)
                if os.path.exists(etag_path):
                    os.remove(etag_path)
                raise CliError(f"SHA-256 mismatch for {self.url}: got {hasher.hexdigest()}, "
                               f"the server's Repr-Digest is {expected.hex()}; "
                               f"removed {part}, the next run downloads it afresh")
        os.replace(part, out)
        if os.path.exists(etag_path):
            os.remove(etag_path)
        if not self.args.quiet:
            verified = f"sha256 {hasher.hexdigest()} verified" if expected is not None \
                else "not verified: no Repr-Digest"
            say(f"saved {out} ({size} bytes, {verified})")
        return out

    def wait_for_digest(self, etag: Optional[str]) -> Optional[bytes]:
        """The server computes a missing digest in the background once a GET asks for it; a
        conditional GET (304, no body) fetches the header without reading the file again."""
        deadline = time.monotonic() + self.args.digest_wait
        delay = 0.2
        while time.monotonic() < deadline:
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)
            response = self.get({"If-None-Match": etag} if etag else {"Range": "bytes=0-0"})
            if etag and response.status_code == 200:
                response.close()
                raise CliError(f"{self.url} changed on the server during the download")
            self.fail_unless(response, 200, 206, 304)
            response.close()
            digest = parse_repr_digest(response.headers.get("Repr-Digest"))
            if digest is not None:
                return digest
        return None


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def download(args: argparse.Namespace) -> int:
    parsed = urlparse(args.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"{args.url!r} is not an http(s) URL")
    session = requests.Session()
    # Ranges count bytes of the stored file; a compressed transfer would count other bytes.
    session.headers["Accept-Encoding"] = "identity"
    attempt = 0
    while True:
        try:
            out = Download(args, session).run()
            break
        except CliError as failure:
            if not failure.transient or attempt >= args.retries:
                raise
            attempt += 1
            say(f"{failure}; retrying ({attempt} of {args.retries})")
            time.sleep(args.retry_delay)
    print(out, flush=True)
    return 0


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tus_server.cli",
        description="Upload files to a tus-minio server and download them back, resumably.")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--retries", type=int, default=3,
                        help="attempts after a transient failure (default 3)")
    common.add_argument("--retry-delay", type=float, default=1.0, metavar="SECONDS",
                        help="pause before each retry (default 1)")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or status lines, only the result on stdout")

    up = sub.add_parser("upload", parents=[common], help="upload a file (resumes a remembered one)")
    up.add_argument("file")
    up.add_argument("--endpoint", default=os.environ.get("TUS_ENDPOINT", DEFAULT_ENDPOINT),
                    help=f"tus creation URL (env TUS_ENDPOINT; default {DEFAULT_ENDPOINT})")
    up.add_argument("--chunk-size", type=parse_size, default=DEFAULT_CHUNK_SIZE, metavar="N",
                    help="bytes per PATCH, e.g. 5M (default 5 MiB)")
    up.add_argument("--url-store", default=os.environ.get("TUS_CLI_URL_STORE") or
                    str(default_url_store()), metavar="PATH",
                    help="JSON file remembering unfinished uploads (env TUS_CLI_URL_STORE; "
                         "default ~/.cache/tus-minio/urls.json)")

    down = sub.add_parser("download", parents=[common],
                          help="download a file, resuming a .part left by an earlier run")
    down.add_argument("url")
    down.add_argument("-o", "--output", metavar="FILE",
                      help="where to save it (a directory keeps the server's filename; "
                           "default: the server's filename in the current directory)")
    down.add_argument("--no-verify", action="store_true",
                      help="save the file even when the server gives no Repr-Digest (one it "
                           "does give is still checked)")
    down.add_argument("--digest-wait", type=float, default=30.0, metavar="SECONDS",
                      help="how long to wait for a digest the server is still computing")
    down.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                      help="read timeout of each request (default 120)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.retries = max(0, args.retries)
    try:
        return upload(args) if args.command == "upload" else download(args)
    except CliError as failure:
        say(f"error: {failure}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; run the same command again to resume")
        return 130
    except OSError as exc:
        say(f"error: {f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")
        return 1
    except Exception as exc:  # still one line; TUS_CLI_DEBUG=1 shows the traceback
        if os.environ.get("TUS_CLI_DEBUG"):
            raise
        say(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
