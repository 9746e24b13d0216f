"""The start-up check that the S3 server keeps the promises fencing rests on.

`storage/writer.py`'s proof assumes that a PUT with `If-None-Match: *` fails (412) when the
object exists, and that a PUT with `If-Match: <etag>` fails unless the object is still at that
ETag, also when several such PUTs race. An S3 server that ignores the headers (Garage's
PutObject does) accepts every write instead: fencing then does nothing, a stalled writer can
overwrite a finished upload, and nothing in normal operation shows it. So before it serves,
the server tries each promise on throw-away objects under `probe/` in the system bucket
(never an upload's) and refuses to start, with one line naming the missing guarantee and the
endpoint, on a server that breaks one. `TUS_UNSAFE_S3=1` runs anyway (a single-process test
setup), with a warning in the log and in /healthz.

SeaweedFS gives every bucket volumes of its own, so a bucket per upload runs out of writable
volumes after a few uploads ("No writable volumes"); the bucket layout is refused there too,
whatever TUS_UNSAFE_S3 says.

The answer is kept per process and endpoint: every app one process makes (the tests make
hundreds) shares one probe. An S3 server that does not answer at start is probed again before
the first request that needs it (`GuardedStore`), which is answered 503 until the probe has
passed.
"""
from __future__ import annotations

import logging
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Optional

from minio.error import S3Error

from ..config import ConfigError, Settings
from .objects import Objects, storage_errors
from .store import StorageUnavailable, StoreError, UploadNotFound

log = logging.getLogger("tus_server.probe")

PREFIX = "probe/"
RACERS = 8  # concurrent creates of one key; exactly one may succeed
UNSAFE_WARNING = ("TUS_UNSAFE_S3=1: the S3 server's conditional writes are not required, so a "
                  "stalled writer may overwrite newer bytes; run one process only, never in "
                  "production")


class StorageRefused(ConfigError):
    """The S3 server lacks a guarantee the server needs: it must not start."""


@dataclass(frozen=True)
class ProbeResult:
    # What failed, in words (None: every guarantee held), and the S3 server's `Server` header.
    missing: Optional[str]
    server: str


_results: dict[tuple, ProbeResult] = {}
_results_guard = threading.Lock()


def _put(objects: Objects, bucket: str, key: str, body: bytes, **condition) -> Optional[str]:
    return objects.put_in_bucket(bucket, key, body, {"Content-Type": "text/plain"},
                                 context="probe", **condition)


def _race(objects: Objects, bucket: str, key: str) -> tuple[list[int], list[BaseException]]:
    """RACERS threads create `key` with If-None-Match: * at once: who won, what failed."""
    start = threading.Barrier(RACERS)
    winners: list[int] = []
    failures: list[BaseException] = []

    def racer(number: int) -> None:
        try:
            start.wait(timeout=10)
            if _put(objects, bucket, key, b"racer %d" % number, if_none_match=True):
                winners.append(number)
        except BaseException as exc:  # noqa: BLE001  (reported by the caller)
            failures.append(exc)

    threads = [threading.Thread(target=racer, args=(n,), name=f"tus-probe-{n}")
               for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return winners, failures


def _guarantees(objects: Objects, bucket: str, key: str) -> tuple[Optional[str], str]:
    """Try each promise on `key` (and `key`-race); the first one broken, and `Server`."""
    first = _put(objects, bucket, key, b"first", if_none_match=True)
    if first is None:
        return "a PUT with If-None-Match: * of a new object was refused", ""
    if _put(objects, bucket, key, b"second", if_none_match=True) is not None:
        return ("If-None-Match: * on PUT is not enforced (a second create of one object "
                "succeeded, not 412)"), ""
    if _put(objects, bucket, key, b"third", if_match="0" * 32) is not None:
        return ("If-Match on PUT is not enforced (a write with a wrong ETag succeeded, "
                "not 412)"), ""
    if _put(objects, bucket, key, b"fourth", if_match=first) is None:
        return "a PUT with If-Match on the current ETag was refused", ""
    with storage_errors():
        stat = objects.client.stat_object(bucket, key)
        if stat.etag.strip('"') == first:
            return "a PUT with If-Match on the current ETag was not stored", ""
        server = stat.metadata.get("Server", "")

    winners, failures = _race(objects, bucket, key + "-race")
    if failures:
        if isinstance(failures[0], StoreError):
            raise failures[0]
        # The racers did not all start within the barrier's 10 s (a box too busy): no verdict.
        raise StorageUnavailable(f"the concurrent-create check did not run "
                                 f"({type(failures[0]).__name__})") from failures[0]
    if len(winners) != 1:
        return (f"If-None-Match: * is not enforced under concurrent PUTs ({len(winners)} of "
                f"{RACERS} simultaneous creates of one object succeeded, not exactly 1)"), server
    with storage_errors():
        response = objects.client.get_object(bucket, key + "-race")
        try:
            stored = response.read()
        finally:
            response.close()
            response.release_conn()
    if stored != b"racer %d" % winners[0]:
        return ("If-None-Match: * is not enforced under concurrent PUTs (the object holds a "
                "loser's bytes, not the winner's)"), server
    return None, server


def _ensure_bucket(objects: Objects, bucket: str) -> Optional[str]:
    """Make sure `bucket` is there: None, or why it cannot be used (S3's error code)."""
    with storage_errors():
        try:
            if objects.client.bucket_exists(bucket):
                return None
            objects.client.make_bucket(bucket)
        except S3Error as exc:
            # Another process may have made it first; on AWS the name may be someone else's.
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists") \
                    and objects.client.bucket_exists(bucket):
                return None
            return exc.code
    return None


def run_probe(objects: Objects, bucket: str) -> ProbeResult:
    """Probe once (no cache). StorageUnavailable when the S3 server does not answer at all."""
    denied = _ensure_bucket(objects, bucket)
    if denied:
        return ProbeResult(f"TUS_SYSTEM_BUCKET {bucket!r}, where the check runs, cannot be "
                           f"used ({denied})", "")
    key = f"{PREFIX}{secrets.token_hex(8)}"
    try:
        missing, server = _guarantees(objects, bucket, key)
    except UploadNotFound as exc:
        # An object the check had just stored is not there (a distributed MinIO whose nodes
        # do not all see every drive yet, right after it formed): no verdict; probed again
        # before the first request that needs it.
        raise StorageUnavailable("S3 did not show an object the check had just stored") \
            from exc
    except StorageUnavailable as exc:
        # An error status instead of 412 (a 400 or 501 for the header, a 403 for a user who may
        # not write there) leaves the guarantee unproven; only a server that stopped answering
        # or answers 5xx (busy, starting) leaves the question open, for a later probe.
        if re.search(r"answered 5\d\d", str(exc)):
            raise
        with storage_errors():
            objects.client.bucket_exists(bucket)
        missing, server = f"conditional PUTs in {bucket!r} answered an error ({exc})", ""
    finally:
        for name in (key, key + "-race"):
            try:
                objects.client.remove_object(bucket, name)
            except Exception:  # noqa: BLE001  (a leftover probe object harms nothing)
                pass
    return ProbeResult(missing, server)


def probe(settings: Settings, objects: Objects) -> ProbeResult:
    """`run_probe` once per process and endpoint."""
    key = (settings.minio_secure, settings.minio_endpoint, settings.minio_access_key,
           settings.system_bucket)
    with _results_guard:  # one probe at a time: concurrent first requests wait for it
        if key not in _results:
            _results[key] = run_probe(objects, settings.system_bucket)
        return _results[key]


def refusal(settings: Settings, result: ProbeResult) -> Optional[str]:
    """The one line why the server must not run on this S3 server (None: it may)."""
    where = f"S3 at {settings.minio_endpoint}"
    if result.missing and not settings.unsafe_s3:
        return (f"{where} fails the conditional-write check: {result.missing}; fencing of "
                "stalled writers needs If-Match and If-None-Match: * on PUT (docs/storage.md, "
                "Storage servers), or set TUS_UNSAFE_S3=1 for a single-process test setup")
    if settings.layout == "bucket" and result.server.startswith("SeaweedFS"):
        return (f"TUS_LAYOUT=bucket needs a bucket per upload, which {where} (SeaweedFS) "
                "cannot sustain: every bucket takes volumes of its own and PUTs fail with "
                "'No writable volumes' after a few uploads; set TUS_LAYOUT=prefix")
    return None


def refusal_at_start(settings: Settings) -> Optional[str]:
    """For a command about to start the server (`tus-minio serve`): the one line why it must
    not (None: it may, or S3 does not answer yet and the server will probe it later)."""
    try:
        return refusal(settings, probe(settings, Objects(settings)))
    except StorageUnavailable:
        return None


class StorageGuard:
    """The probe's verdict for one app: checked at start, again later if S3 did not answer."""

    def __init__(self, settings: Settings, objects: Objects):
        self.settings = settings
        self.objects = objects
        self.result: Optional[ProbeResult] = None
        self.refused: Optional[str] = None
        if settings.unsafe_s3:
            log.warning(UNSAFE_WARNING)
        try:
            self._check()
        except StorageUnavailable as exc:
            log.warning("S3 at %s gave no verdict yet (%s): its conditional writes are checked "
                        "before the first request that needs it", settings.minio_endpoint, exc)
        if self.refused:
            raise StorageRefused(self.refused)

    def _check(self) -> None:
        result = probe(self.settings, self.objects)
        refused = refusal(self.settings, result)
        if result.missing and not refused:
            log.warning("S3 at %s fails the conditional-write check: %s; running anyway "
                        "(TUS_UNSAFE_S3=1)", self.settings.minio_endpoint, result.missing)
        self.result, self.refused = result, refused

    def require(self) -> None:
        """Before a store verb: StorageUnavailable (a 503) until S3 has been probed and
        passed."""
        if self.result is None:
            self._check()  # StorageUnavailable while S3 still does not answer
            if self.refused:
                log.error("%s", self.refused)
        if self.refused:
            raise StorageUnavailable(self.refused)

    def detail(self) -> dict:
        """/healthz's view; never names the endpoint (it is public, the storage network not)."""
        if self.result is None:
            state = "not checked yet"
        elif self.result.missing:
            state = "not enforced"
        else:
            state = "enforced"
        detail = {"conditional_writes": state}
        if self.settings.unsafe_s3:
            detail["warning"] = UNSAFE_WARNING
        return detail


class GuardedStore:
    """The store as requests see it: each verb first asks the guard (a 503 until S3 has been
    probed and passed), so a request that never reaches storage (a malformed id is a 404)
    never waits for it. Other attributes pass through."""

    VERBS = frozenset(("create", "get", "locked", "write", "declare_length", "terminate",
                       "open", "list_ids", "list_page", "list", "expire", "schedule_digest",
                       "read_object"))

    def __init__(self, store, guard: StorageGuard):
        self._store = store
        self._guard = guard

    def __getattr__(self, name):
        if name in self.VERBS:
            self._guard.require()
        return getattr(self._store, name)
