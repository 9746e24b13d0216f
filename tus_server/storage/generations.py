"""An upload's state as write-once generations, so that no torn write can lose an upload.

Every state write is a new object `.tus/info/<N>` put with `If-None-Match: *`, N stored
inverted so that the newest generation sorts first in a listing. Nothing the current state
depends on is ever overwritten: on an erasure-coded MinIO, an overwrite that tears (new version
on some drives, old on others) leaves neither readable, while a new object that tears is either
readable whole or absent, and was never acknowledged.

Reading = one LIST of the prefix (the first few keys) and a GET of the newest; when the newest
cannot be read (NoSuchKey, a quorum error, bad JSON) the next one is the state: a torn write
costs at most the progress it was to record. 404 only when nothing of the upload exists; any
object without a readable generation is a degraded store (503).

Writing = a generation greater than any the writer has seen (the listed ones, readable or not).
A 412 means another request wrote that generation first: stop (`WriteFenced`), unless the
generation is neither listed nor readable (a torn write): then skip to the next number. A
PATCH's commit whose PUT got no answer within `QUICK` (or a 503) also skips to the next
number, in the same request: on a distributed MinIO a key whose write a killed node was
coordinating stays locked for one to two minutes, and trying it again on every retry of the
client stalled an upload that long. It skips only while the number is still not listed and a
fresh look at the lock finds it the writer's own: then no other writer may commit, and a stale
one (whose target is at most that number) lands below and is caught by its end-of-request
check, as any stalled writer's.
Only after a commit of generation g succeeded are generations below g - 1 deleted, in batches
(`prune_names`); a stalled writer whose target was pruned writes an invisible old generation,
which the writer's own check at the end of its request (`newest`) reveals.

A generation never changes once written, so the process keeps the last few thousand it wrote
or read (`KnownGenerations`): a read whose LIST names one of them skips the GET. A PATCH that
follows this process's own last commit (the usual case: a client's next chunk) then costs one
request less, and so does a HEAD.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Optional

from .store import StorageUnavailable, UploadInfo, UploadNotFound, WriteFenced
from .layout import GENERATION_PREFIX, INFO_NAME, LOCK_PREFIX, generation_key, generation_number
from .objects import QUICK, Objects, timed_out
from .recent import RecentObjects

log = logging.getLogger("tus_server.store")

# Generations a read tries, newest first, before it calls the store degraded: pruning keeps
# two, and a stalled writer's commit into a pruned number always lands below both.
READ_TRIES = 2
# Unlisted, unreadable generations a write skips before it gives up (torn writes).
SKIPS = 3
# Generations are pruned when a request's commits cross a multiple of this.
PRUNE_EVERY = 4
# Generation PUTs that got no answer (or a 503) a commit skips before it gives up: on a
# distributed MinIO, a key whose write a killed node was coordinating stays locked for one
# to two minutes, and a commit that tried the same number again on each retry of the client
# stalled the upload that long (112 s in a scale-out run).
UNANSWERED_SKIPS = 2
# Seconds between the tries of a newest generation that was listed but not readable.
NEWEST_RETRY_DELAYS = (0.3, 0.7)
# Generations a process keeps in memory (each a small JSON document, O(1) in the file size).
KNOWN = 4096
# A generation GET unanswered after this many seconds is read past, for this read: a key that
# a killed node of a distributed MinIO left locked hangs until the short timeout (3 s), and
# each read that waited for it held its client up that long. The GET goes on in the
# background: a late answer is kept (the next read uses it); a timeout marks the generation
# unreadable, for `UNREADABLE_FOR` seconds.
HEDGE_AFTER = 1.0
UNREADABLE_FOR = 60.0


class KnownGenerations(RecentObjects):
    """The stored bytes of recently written or read generations, by (upload, number)."""

    def __init__(self, size: int = KNOWN):
        super().__init__(size)


def parse_state(data: bytes, name: str, upload_id: str) -> Optional[UploadInfo]:
    """A stored state object, or None when it is damaged."""
    try:
        return UploadInfo.from_dict(json.loads(data))
    except (ValueError, TypeError):
        log.warning("state object %s is damaged upload_id=%s", name, upload_id)
        return None


class UnreadableMarks:
    """Generations this process found unreadable (torn, or their key stuck inside MinIO), each
    remembered for `UNREADABLE_FOR` seconds, and those whose GET is still hanging: neither is
    asked again meanwhile. A stuck key frees itself within a minute or two (MinIO's stale-lock
    sweep), and a MinIO that was only slow must not leave this process reading past a good
    generation for ever."""

    def __init__(self, size: int = KNOWN // 4):
        self.size = size
        self._marked: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._hanging: set[tuple[str, int]] = set()
        self._guard = threading.Lock()

    def mark(self, upload_id: str, number: int) -> None:
        with self._guard:
            self._marked[(upload_id, number)] = time.monotonic() + UNREADABLE_FOR
            self._marked.move_to_end((upload_id, number))
            while len(self._marked) > self.size:
                self._marked.popitem(last=False)

    def __contains__(self, key: tuple[str, int]) -> bool:
        with self._guard:
            if key in self._hanging:
                return True
            until = self._marked.get(key)
            if until is not None and until < time.monotonic():
                del self._marked[key]
                until = None
            return until is not None

    def hang(self, key: tuple[str, int], hanging: bool) -> None:
        with self._guard:
            (self._hanging.add if hanging else self._hanging.discard)(key)


class Generations:
    def __init__(self, objects: Objects, known: Optional[KnownGenerations] = None):
        self.objects = objects
        self.known = known if known is not None else KnownGenerations()
        self.unreadable = UnreadableMarks()

    # ----------------------------------------------------------------- reading
    def listed(self, upload_id: str, limit: int = READ_TRIES) -> list[int]:
        """The newest generation numbers, newest first (one LIST)."""
        names = self.objects.list_names(upload_id, GENERATION_PREFIX, limit=limit)
        numbers = [generation_number(name) for name in names]
        return [n for n in numbers if n is not None]

    def newest(self, upload_id: str) -> int:
        numbers = self.listed(upload_id, limit=1)
        return numbers[0] if numbers else 0

    def read(self, upload_id: str, patient: bool = False) -> UploadInfo:
        """The newest readable generation; `version` is its number, `seen` the highest listed.

        `patient`: ask MinIO for every listed generation again, whatever this process marked
        unreadable, once each, waiting up to the short timeout instead of `HEDGE_AFTER`.
        For a read whose fallback would be an error anyway (a download that an older state
        calls unfinished): a mark lasts a minute, and a newest generation that a rejoining
        node kept unreadable for a second would otherwise fail this process's downloads of
        the upload all that time while other processes serve them."""
        info = self._read_once(upload_id, patient=patient)
        if info is None:  # the first generation appeared between two LISTs (a creation)
            info = self._read_once(upload_id, last_try=True, patient=patient)
        if info.terminated:
            raise UploadNotFound(upload_id)
        return info

    def _read_once(self, upload_id: str, last_try: bool = False,
                   patient: bool = False) -> Optional[UploadInfo]:
        numbers = self.listed(upload_id)
        for number in numbers:
            # A generation judged torn or stuck here is not asked again (each try of a stuck
            # key waits out the short timeout); an older one is readable, or this raises.
            known_bad = not patient and (upload_id, number) in self.unreadable
            info = None if known_bad else \
                self._get(upload_id, generation_key(number), number, patient)
            if info is None and number == numbers[0] and not known_bad and not patient:
                info = self._get_newest_again(upload_id, number)
            if info is not None:
                info.version, info.seen = number, numbers[0]
                return info
            log.warning("generation %d unreadable, reading the one before upload_id=%s",
                        number, upload_id)
        if numbers:
            raise StorageUnavailable(f"no generation of upload {upload_id} is readable")
        info = self._get(upload_id, INFO_NAME)  # written by earlier versions
        if info is not None:
            info.version, info.seen = 0, 0
            return info
        # 404 only when MinIO says nothing of the upload remains (the lock, which any request
        # may create, does not count); anything else without a state is a degraded store.
        names = [name for name in self.objects.list_names(upload_id, limit=8)
                 if not name.startswith(LOCK_PREFIX.rstrip("/"))]
        if not names:
            raise UploadNotFound(upload_id)
        if not last_try and any(name.startswith(GENERATION_PREFIX) for name in names):
            return None
        log.warning("objects but no readable state upload_id=%s", upload_id)
        raise StorageUnavailable(f"the state of upload {upload_id} cannot be read")

    def _get_newest_again(self, upload_id: str, number: int) -> Optional[UploadInfo]:
        """The newest generation was listed but not readable: a torn write (never readable,
        never acknowledged) or, right after a MinIO node rejoined, one that will be readable
        in a moment. Try again after `NEWEST_RETRY_DELAYS`, once per generation and process:
        one judged torn is read past at once from then on."""
        if (upload_id, number) in self.unreadable:
            return None
        for delay in NEWEST_RETRY_DELAYS:
            time.sleep(delay)
            info = self._get(upload_id, generation_key(number), number)
            if info is not None or (upload_id, number) in self.unreadable:
                return info
        self.unreadable.mark(upload_id, number)
        return None

    def readable(self, upload_id: str, number: int) -> bool:
        return self._get(upload_id, generation_key(number)) is not None

    def _get(self, upload_id: str, name: str, number: Optional[int] = None,
             patient: bool = False) -> Optional[UploadInfo]:
        """One state object, or None when it is missing, unreadable or damaged; generation
        `number` comes from memory when this process knows it. Not `patient`: a generation's
        GET is read past after `HEDGE_AFTER` (`_fetch`)."""
        data = self.known.get(upload_id, number) if number is not None else None
        if data is None:
            try:
                data = self.objects.read_object(upload_id, name, quick=True)[0] \
                    if number is None or patient else self._fetch(upload_id, name, number)
            except StorageUnavailable:  # a quorum error: the caller tries another
                return None
            if data is None:
                return None
        info = parse_state(data, name, upload_id)
        if info is not None and number is not None:
            self.known.put(upload_id, number, data)
        return info

    def _fetch(self, upload_id: str, name: str, number: int) -> Optional[bytes]:
        """The bytes of generation `number`, or None when it does not exist or its GET did not
        answer within `HEDGE_AFTER` (it goes on in the background, see there)."""
        key = (upload_id, number)
        outcome: dict = {}
        answered = threading.Event()
        gave_up = threading.Event()

        def fetch() -> None:
            try:
                outcome["data"] = self.objects.read_object(upload_id, name, quick=True)[0]
            except BaseException as exc:
                outcome["error"] = exc
                if isinstance(exc, StorageUnavailable) and timed_out(exc):
                    # Its key is locked inside MinIO (a node that coordinated its write died).
                    self.unreadable.mark(upload_id, number)
            finally:
                self.unreadable.hang(key, False)
                answered.set()
            if gave_up.is_set() and outcome.get("data") is not None \
                    and parse_state(outcome["data"], name, upload_id) is not None:
                self.known.put(upload_id, number, outcome["data"])  # late, but good

        self.unreadable.hang(key, True)
        threading.Thread(target=fetch, name="tus-state-get", daemon=True).start()
        if not answered.wait(HEDGE_AFTER):
            gave_up.set()
            if not answered.is_set():
                log.info("generation %d not answered in %g s, read past upload_id=%s",
                         number, HEDGE_AFTER, upload_id)
                return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["data"]

    # ----------------------------------------------------------------- writing
    def commit(self, info: UploadInfo, after: int,
               still_ours: Optional[Callable[[], bool]] = None) -> int:
        """Store `info` as a generation above `after` (the highest this writer has seen); its
        number, also set as `info.version`. Raises `WriteFenced` when another request wrote
        a newer state, `UploadNotFound` when the upload's bucket is gone.

        `still_ours`: a fresh look at the writer's lock. With it, a generation PUT that got
        no answer (or a 503) is skipped for the next number while the lock is the writer's
        and the number was not listed since (see the module's docstring)."""
        target = after + 1
        data = json.dumps(info.to_dict(), separators=(",", ":")).encode()
        unanswered = 0
        for _ in range(SKIPS + UNANSWERED_SKIPS + 1):
            try:
                etag = self.objects.conditional_put(info.id, generation_key(target), data,
                                                    if_none_match=True, timeout=QUICK)
            except StorageUnavailable:
                unanswered += 1
                if still_ours is None or unanswered > UNANSWERED_SKIPS:
                    raise
                numbers = self.listed(info.id, limit=1)
                if (numbers and numbers[0] >= target) or not still_ours():
                    raise  # it landed after all (or somebody's did), or the lock moved on
                log.warning("generation %d got no answer, writing %d upload_id=%s", target,
                            target + 1, info.id)
                target += 1
                continue
            if etag is not None or self._own(info.id, target, data):
                self.known.put(info.id, target, data)
                info.version = info.seen = target
                return target
            numbers = self.listed(info.id, limit=1)
            if (numbers and numbers[0] >= target) or self.readable(info.id, target):
                raise WriteFenced(f"upload {info.id} was changed by another request")
            log.warning("skipping generation %d, written but never readable upload_id=%s",
                        target, info.id)
            target += 1
        raise WriteFenced(f"upload {info.id}: too many unreadable generations")

    def _own(self, upload_id: str, number: int, data: bytes) -> bool:
        """Is the generation that made our PUT fail (412) the very bytes we sent, so our own
        write, landed by an earlier try? (A balancer may send a buffered PUT to another node
        when the first died after taking it; the bytes name this writer's token.)"""
        try:
            return self.objects.read_object(upload_id, generation_key(number), quick=True)[0] \
                == data
        except StorageUnavailable:
            return False

    @staticmethod
    def prune_names(before: int, last: int) -> list[str]:
        """Generations to delete after `last` was committed by a request that started from
        `before`: those below last - 1, when the commits crossed a multiple of PRUNE_EVERY
        (so a delete is one request per few generations, not one per PATCH)."""
        if last // PRUNE_EVERY == before // PRUNE_EVERY or last < 2:
            return []
        low = max(0, before - PRUNE_EVERY - 1)
        return [generation_key(n) for n in range(low, last - 1) if n > 0] + [INFO_NAME]

