"""The lock's generations as objects: their keys, what they say, one look, one write.

    .tus/lock/<10**12 - n>     (empty; x-amz-meta-tus-lock: <state>.<holder>.<instance>.<expires>)

`storage/lease.py` has the design (why write-once, why the number alone is the key, hand-over);
this module only reads and writes generations, with the short timeouts of `Objects.quick`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from .layout import LOCK_PREFIX
from .objects import Objects
from .store import StorageUnavailable, UploadNotFound

TOP = 10 ** 12
# The user metadata that says what a generation is (`Generation.label`).
META = "tus-lock"
# Generations a release lists: those below its `released` are deleted before it answers.
PRUNE_LIST = 16
# Per upload, the highest generation number this process tried: a number that failed is
# never tried again, even when no LIST shows it.
_tried: dict[str, int] = {}


class Generation(NamedTuple):
    number: int
    state: str  # "held", "release" or "released"
    holder: str
    instance: Optional[str]
    expires: float

    def name(self) -> str:
        """The object's name after `.tus/lock/`: the number alone (one key per number)."""
        return f"{TOP - self.number:012d}"

    def label(self) -> str:
        """What the generation says, in its user metadata `META`."""
        return f"{self.state}.{self.holder}.{self.instance or '-'}.{int(self.expires)}"


def generation_number(name: str) -> Optional[int]:
    """The number a lock object's name (after `.tus/lock/`) stands for; None if foreign."""
    return TOP - int(name) if len(name) == 12 and name.isdigit() else None


def parse_generation(name: str, label: Optional[str]) -> Optional[Generation]:
    """The generation of a lock object's name (after `.tus/lock/`) and label; None if foreign."""
    number = generation_number(name)
    try:
        state, holder, instance, expires = (label or "").split(".")
        return Generation(number, state, holder, None if instance == "-" else instance,
                          float(expires)) if number is not None else None
    except ValueError:
        return None


def look(objects: Objects, upload_id: str,
         limit: int = 2) -> tuple[Optional[Generation], list[tuple[str, int]]]:
    """The lock's newest generation (None: never taken) and the first `limit` generation keys
    listed with their numbers. One LIST with the short timeout (and a HEAD of the newest when
    the server lists no user metadata)."""
    bucket, prefix = objects.location(upload_id)
    base = prefix + LOCK_PREFIX
    for _ in range(3):
        listed, newest = [], None
        for key, label in objects.list_meta_quickly(bucket, base, limit, META, upload_id):
            number = generation_number(key[len(base):])
            if number is None:
                continue
            listed.append((key, number))
            if newest is None:
                if label is None:
                    try:
                        label = objects.meta_quickly(bucket, key, META, upload_id)
                    except UploadNotFound:
                        break  # pruned since the LIST: look again
                newest = parse_generation(key[len(base):], label)
        else:
            return newest, listed
    raise StorageUnavailable(f"the lock of upload {upload_id} could not be read")


def current(objects: Objects, upload_id: str) -> Optional[Generation]:
    """The lock's newest generation (None: never taken)."""
    return look(objects, upload_id)[0]


def write_generation(objects: Objects, upload_id: str, newest: Optional[Generation],
                     state: str, holder: str, instance: Optional[str],
                     expires: float = 0.0, skip: bool = True) -> Optional[Generation]:
    """PUT the generation after `newest` (and, with `skip`, after any number tried here): the
    generation written, None when somebody else wrote that number first (412).

    Raises StorageUnavailable when the PUT failed or timed out: with `skip`, its number is
    then never tried again. A hand-over request does not skip (`skip=False`): written above a
    `released` this LIST did not show yet, it would ask a holder that already left."""
    number = (newest.number if newest else 0) + 1
    if skip:
        number = max(number, _tried.get(upload_id, 0) + 1)
        if len(_tried) > 10000:
            _tried.clear()
        _tried[upload_id] = number
    # Whole seconds, as the label says: the keeper compares what it wrote with what it lists.
    generation = Generation(number, state, holder, instance, float(int(expires)))
    key = objects.location(upload_id)[1] + LOCK_PREFIX + generation.name()
    etag = objects.put_if(upload_id, key, b"", {"Content-Type": "application/octet-stream",
                                                f"x-amz-meta-{META}": generation.label()},
                          if_none_match=True, quick=True)
    return generation if etag is not None else None


def prune(objects: Objects, upload_id: str, below: int) -> bool:
    """Delete the lock generations older than number `below` (best effort)."""
    bucket, prefix = objects.location(upload_id)
    try:
        names = objects.list_quickly(bucket, prefix + LOCK_PREFIX, 1000, upload_id)
    except UploadNotFound:
        return True
    for key in names:
        number = generation_number(key[len(prefix + LOCK_PREFIX):])
        if number is not None and number < below:
            objects.remove_quickly(bucket, key)
    return True
