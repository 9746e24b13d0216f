"""What every CLI command shares: one-line failures, the HTTP session, sizes, Ctrl-C care.

Nothing here imports `requests` at module level: `--help` and argument errors must stay as fast
as the interpreter, and each command imports the client libraries it needs when it runs (inside
`main`'s handler, so a Ctrl-C during those imports is a clean exit too).
"""
from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import time
from typing import TYPE_CHECKING, Callable, Optional, TypeVar
from urllib.parse import urljoin, urlparse

if TYPE_CHECKING:
    import requests

DEFAULT_ENDPOINT = "http://127.0.0.1:5000/files/"
TRANSIENT_STATUS = {429, 502, 503, 504}
TUS = {"Tus-Resumable": "1.0.0"}
UPLOAD_ID = re.compile(r"tus-[0-9a-f]{32}")
T = TypeVar("T")


class CliError(Exception):
    """A failure reported as one line; `transient` ones are worth another attempt."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(" ".join(message.split()))
        self.transient = transient


def say(message: str) -> None:
    """Status goes to stderr, so stdout carries only results (URLs, paths, the table)."""
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


def server_text(response: "requests.Response") -> str:
    """The first line of a short error body (the server answers errors in plain text)."""
    import requests

    try:
        text = response.text.strip()
    except requests.RequestException:
        text = ""
    return text.splitlines()[0][:300] if text else ""


def http_failure(what: str, response: "requests.Response") -> CliError:
    detail = server_text(response)
    return CliError(f"{what} answered {response.status_code} {response.reason}"
                    + (f": {detail}" if detail else ""),
                    transient=response.status_code in TRANSIENT_STATUS)


def parse_size(text: str) -> int:
    """`5242880`, `64K`, `5M`, `5MiB`, `1G` (binary multiples, like every size the CLI prints)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 5242880, 64K or 5M")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: float) -> str:
    """A size in binary units, labelled as such: `MiB` means 1024*1024 bytes, never 10**6.

    Three significant digits (`5.00 MiB`, `27.3 MiB`, `512 MiB`); a value that would round to
    1024 of one unit is shown in the next (`1.00 GiB`, not `1024 MiB`).
    """
    if size < 1024:
        return f"{int(round(size))} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
        text = f"{value:.{digits}f}"
        if float(text) < 1024 or unit == _UNITS[-1]:
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: Optional[float]) -> str:
    """A speed in the same units as the sizes next to it (`12.5 MiB/s`); `?` before it is known."""
    if bytes_per_second is None or bytes_per_second < 0:
        return "? B/s"
    return format_bytes(bytes_per_second) + "/s"


# --------------------------------------------------------------------------------- HTTP
def auth_headers(token: Optional[str]) -> dict:
    """`Authorization: Bearer <token>` when a token is given (a server with TUS_AUTH=jwt needs it)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def new_session(args: argparse.Namespace) -> "requests.Session":
    import requests

    session = requests.Session()
    session.headers.update(auth_headers(args.token))
    return session


def endpoint_url(endpoint: str) -> str:
    """The creation URL with one trailing slash, so `urljoin(endpoint, id)` lands below it."""
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"--endpoint {endpoint!r} is not an http(s) URL")
    return endpoint.rstrip("/") + "/"


def upload_url(target: str, endpoint: str) -> str:
    """An upload's URL from a URL or a bare id (`tus-` + 32 hex, as `ls` shows them)."""
    if UPLOAD_ID.fullmatch(target):
        return urljoin(endpoint_url(endpoint), target)
    parsed = urlparse(target)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"{target!r} is not an http(s) URL nor an upload id")
    return target


def with_retries(action: Callable[[], T], args: argparse.Namespace) -> T:
    """Run `action`, again after a transient CliError, at most `--retries` more times."""
    attempt = 0
    while True:
        try:
            return action()
        except CliError as failure:
            if not failure.transient or attempt >= args.retries:
                raise
            attempt += 1
            say(f"{failure}; retrying ({attempt} of {args.retries})")
            time.sleep(args.retry_delay)


# --------------------------------------------------------------------------------- Ctrl-C
@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C until the block is done, then raise it.

    For the few steps that must not stop half way: rewriting the URL store (a JSON file
    rewritten in place), and renaming a verified download into place and dropping its state.
    A Ctrl-C there would leave a store the next run cannot read, or a saved file whose state
    still claims it is a partial.
    """
    pending = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    except ValueError:  # not the main thread: nothing to hold back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt

