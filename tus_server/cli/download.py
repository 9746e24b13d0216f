"""`download URL`: stream a finished upload into a file, resumably, verified, never clobbering.

The bytes go to `<out>.part`; `<out>.part.json` next to it names the upload (its URL) and the
response's ETag, and is written before the first byte. Run again after an interruption, the
CLI resumes that .part only when the state names the same upload, asking for
`Range: bytes=<have>-` with `If-Range: <etag>`, so a file that changed on the server is sent
whole (200) and started over, never spliced. The SHA-256 of the whole file (the bytes already in
the .part, then the new ones) must equal the server's `Repr-Digest` before the .part is renamed
into place.

Nothing the user already has is replaced silently: an existing `<out>`, or a .part that is not
a partial of this upload, stops the command with exit status 1 unless `--force` is given (and
even then an existing `<out>` is only replaced once the new file is complete and verified).
A `.part` or `.part.json` that is a symbolic link is refused, with or without `--force`, and
both are opened with O_NOFOLLOW: a link planted in a shared directory must not make the CLI
append the download to (or read state from) a file elsewhere.
"""
from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import os
import re
import time
from email.message import Message
from typing import Optional
from urllib.parse import unquote, urlparse

import requests

from .common import (CliError, deferred_interrupt, describe, format_bytes, http_failure,
                     new_session, say, upload_url, with_retries, UPLOAD_ID)
from .progress import Progress
from ..names import safe_filename

PIECE = 1024 * 1024  # bytes read from the disk at a time
# Bytes read from the network at a time: when a transfer breaks, the piece being read is lost,
# so it stays small and the .part keeps nearly all that arrived.
NET_PIECE = 64 * 1024


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
    """The Content-Disposition filename (RFC 5987 `filename*` preferred), as a safe base name."""
    header = response.headers.get("Content-Disposition", "")
    name = None
    extended = re.search(r"filename\*\s*=\s*([^;]+)", header, re.IGNORECASE)
    if extended:
        charset, _, rest = extended.group(1).strip().partition("'")
        _, _, encoded = rest.partition("'")
        try:
            name = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = None
    if name is None:
        message = Message()
        message["Content-Disposition"] = header
        name = message.get_filename()
    name = safe_filename(name, fallback)
    return fallback if name in (".", "..") else name


_FLAGS = {"r": os.O_RDONLY, "rb": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def open_own(path: str, mode: str):
    """`open(path, mode)`, refusing a symbolic link at `path` (O_NOFOLLOW)."""
    try:
        fd = os.open(path, _FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CliError(f"{path} is a symbolic link; refusing to follow it (remove it)") \
                from None
        raise
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def hash_file(path: str, hasher=None):
    hasher = hasher or hashlib.sha256()
    with open_own(path, "rb") as existing:
        for piece in iter(lambda: existing.read(PIECE), b""):
            hasher.update(piece)
    return hasher


def _content_range(response: requests.Response) -> tuple[int, int]:
    """(first byte, complete length) of a 206's `Content-Range: bytes a-b/n`."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", ""))
    if not match:
        raise CliError(f"the server sent 206 with an unusable Content-Range "
                       f"{response.headers.get('Content-Range')!r}")
    return int(match.group(1)), int(match.group(3))


def same_upload(a: Optional[str], b: str) -> bool:
    """Two URLs of one upload: equal, or ending in the same tus id (an id is 128 random bits,
    and `localhost` vs `127.0.0.1` must not cost a restart)."""
    if not a:
        return False
    tail_a = urlparse(a).path.rstrip("/").rsplit("/", 1)[-1]
    tail_b = urlparse(b).path.rstrip("/").rsplit("/", 1)[-1]
    return a == b or (tail_a == tail_b and bool(UPLOAD_ID.fullmatch(tail_a)))


class PartState:
    """`<out>.part` and the `<out>.part.json` saying which upload (URL, ETag) it is part of."""

    def __init__(self, out: str):
        self.out = out
        self.part = out + ".part"
        self.path = out + ".part.json"

    def read(self) -> dict:
        try:
            with open_own(self.path, "r") as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write(self, url: str, etag: Optional[str]) -> None:
        with deferred_interrupt(), open_own(self.path, "w") as handle:
            json.dump({"url": url, "etag": etag}, handle)
            handle.write("\n")

    def drop(self) -> None:
        for path in (self.part, self.path):
            if os.path.exists(path):
                os.remove(path)

    def have(self) -> int:
        return os.path.getsize(self.part) if os.path.isfile(self.part) else 0


class Download:
    """One attempt at fetching `url` into `out` (resuming from `<out>.part` when it can)."""

    def __init__(self, args: argparse.Namespace, url: str, session: requests.Session):
        self.args = args
        self.url = url
        self.session = session
        self.timeout = (10, args.timeout)

    def get(self, headers: dict) -> requests.Response:
        try:
            return self.session.get(self.url, headers=headers, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CliError(f"GET {self.url}: {describe(exc)}",
                           transient=not isinstance(exc, ValueError)) from None  # bad URL

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
        try:
            state, resume_etag = self.check_target(out)
        except CliError:
            if first is not None:
                first.close()
            raise

        response = None
        if resume_etag and (first is None or first.headers.get("ETag") == resume_etag):
            if first is not None:
                first.close()
                first = None
            have = state.have()
            response = self.get({"Range": f"bytes={have}-", "If-Range": resume_etag})
            if response.status_code == 416:
                response.close()
                if response.headers.get("Content-Range") == f"bytes */{have}":
                    # The .part already holds the whole file: only the digest is left to check.
                    return self.finish(state, have, resume_etag, None)
                say("the .part is longer than the file on the server; starting over")
                response = None
            elif response.status_code == 200:
                say(f"{os.path.basename(out)} changed on the server since the .part began "
                    "(ETag); starting over")
        elif resume_etag:
            say(f"{os.path.basename(out)} changed on the server since the .part began (ETag); "
                "starting over")
        if response is None:
            response = first or self.get({})
        self.fail_unless(response, 200, 206)
        return self.receive(state, response)

    def check_target(self, out: str) -> tuple[PartState, Optional[str]]:
        """Refuse to replace what is not ours; return the ETag to resume with, if any."""
        force = self.args.force
        if os.path.isdir(out):
            raise CliError(f"{out} is a directory")
        if os.path.lexists(out):
            if not force:
                raise CliError(f"{out} already exists; pass --force to replace it "
                               "(or -o to save elsewhere)")
            say(f"{out} exists; it is replaced once the download is complete and verified")
        state = PartState(out)
        for path in (state.part, state.path):
            if os.path.islink(path):
                raise CliError(f"{path} is a symbolic link; refusing to follow it (remove it)")
        if not os.path.lexists(state.part):
            return state, None
        saved = state.read()
        if same_upload(saved.get("url"), self.url):
            if saved.get("etag"):
                return state, saved["etag"]
            say("the .part cannot be resumed (the server sent no ETag for it); starting over")
            return state, None
        if saved.get("url"):
            problem = (f"{state.part} is a partial download of {saved['url']}; finish it with "
                       f"`download {saved['url']} -o {out}`")
        else:
            problem = f"{state.part} exists but is not a partial download of {self.url}"
        if not force:
            raise CliError(f"{problem}, or pass --force to discard it")
        say(f"{problem}; discarding it (--force)")
        return state, None

    def receive(self, state: PartState, response: requests.Response) -> str:
        etag = response.headers.get("ETag")
        hasher = hashlib.sha256()
        if response.status_code == 206:
            start, total = _content_range(response)
            have = state.have()
            if start != have:
                response.close()
                raise CliError(f"asked to resume at byte {have}, the server sent from {start}")
            if not self.args.quiet:
                say(f"resuming at byte {start} of {total} "
                    f"({format_bytes(start)} of {format_bytes(total)})")
            hash_file(state.part, hasher)  # the bytes already here count in the digest
            mode = "ab"
        else:
            start = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        # Written before the .part changes, so a .part is never without the upload it belongs to.
        state.write(self.url, etag)
        received = 0
        try:
            with open_own(state.part, mode) as sink, \
                    Progress(total, start, os.path.basename(state.out), self.args.quiet) as bar:
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
        return self.finish(state, start + received, etag, response.headers.get("Repr-Digest"),
                           hasher=hasher)

    def finish(self, state: PartState, size: int, etag: Optional[str],
               repr_digest: Optional[str], hasher=None) -> str:
        expected = parse_repr_digest(repr_digest)
        if expected is None and not self.args.no_verify:
            expected = self.wait_for_digest(etag)
            if expected is None:
                raise CliError(f"the server gave no Repr-Digest for {self.url} within "
                               f"{self.args.digest_wait:g}s, so the file cannot be verified; "
                               "run again later, or pass --no-verify")
        if expected is not None:  # checked even with --no-verify when the server sent one
            hasher = hasher or hash_file(state.part)  # nothing fetched: hash the .part as it is
            if hasher.digest() != expected:
                state.drop()
                raise CliError(f"SHA-256 mismatch for {self.url}: got {hasher.hexdigest()}, "
                               f"the server's Repr-Digest is {expected.hex()}; "
                               f"removed {state.part}, the next run downloads it afresh")
        with deferred_interrupt():  # the file and its state change together
            os.replace(state.part, state.out)
            state.drop()
        if not self.args.quiet:
            verified = f"sha256 {hasher.hexdigest()} verified" if expected is not None \
                else "not verified: no Repr-Digest"
            say(f"saved {state.out} ({format_bytes(size)}, {verified})")
        return state.out

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


def run(args: argparse.Namespace) -> int:
    url = upload_url(args.url, args.endpoint)
    session = new_session(args)
    # Ranges count bytes of the stored file; a compressed transfer would count other bytes.
    session.headers["Accept-Encoding"] = "identity"
    out = with_retries(lambda: Download(args, url, session).run(), args)
    print(out, flush=True)
    return 0
