"""The storage contract the protocol layer talks to: `UploadInfo`, `Store`, storage errors.

Nothing here knows about HTTP or MinIO. `minio_backend.MinioStore` is one implementation.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, fields
from typing import BinaryIO, Iterator, Optional, Protocol

UPLOAD_ID_RE = re.compile(r"tus-[0-9a-f]{32}")


def new_upload_id() -> str:
    """`tus-` + 32 lowercase hex characters from the OS's cryptographic random source."""
    return "tus-" + secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    """The whole value is an id: `re.match` with `$` would also take a trailing newline."""
    return bool(UPLOAD_ID_RE.fullmatch(value))


@dataclass
class UploadInfo:
    """Everything the server knows about one upload; stored as write-once generations
    `.tus/info/<N>` (see `storage/generations.py`)."""

    id: str
    length: Optional[int]  # None while the length is deferred
    offset: int = 0
    chunk_size: int = 5 * 1024 * 1024
    metadata: dict[str, Optional[str]] = field(default_factory=dict)
    filename: str = "upload"  # safe base name used in chunk keys
    created: float = 0.0
    updated: float = 0.0
    expires: Optional[float] = None  # unix time; None = never
    completed: bool = False
    # "partial", "final" or None; a final upload lists its partials in order.
    concat: Optional[str] = None
    partials: list[str] = field(default_factory=list)
    sha256: Optional[str] = None  # hex digest of the whole file once known
    # Token of the request that wrote this generation (see storage/writer.py): a writer
    # re-reads the newest generation to prove that no later writer has started.
    writer: Optional[str] = None
    # The bytes of the chunk holding `offset` when it is not on a chunk boundary, as write-once
    # piece objects: [start, end, key, crc32c], contiguous from the chunk's start to `offset`.
    pieces: list[list] = field(default_factory=list)
    # Complete chunks below `offset` whose chunk object could not be written (its PUT got no
    # answer in time: MinIO may hold a dead node's lock on that key for minutes), stored as one
    # write-once piece each instead, [start, end, key, crc32c]; read in place of the chunk.
    stand_ins: list[list] = field(default_factory=list)
    # Piece keys no longer referenced, deleted in batches once a generation drops them.
    garbage: list[str] = field(default_factory=list)
    # A tombstone: terminated (kept in the prefix layout so a stalled writer cannot revive it).
    terminated: bool = False
    # The protocol that created the upload: "tus-1.0" or "ietf-draft" (both serve it alike).
    protocol: str = "tus-1.0"
    # The `sub` of the token that created the upload (access control); None when created
    # without one, which only an admin reaches while access control is on.
    owner: Optional[str] = None

    @property
    def is_deferred(self) -> bool:
        return self.length is None

    # The generation this was read from, and the highest generation number listed next to it
    # (not stored): a write may start from them instead of reading the state again; its
    # generation writes fail if they are stale.
    version: Optional[int] = field(default=None, compare=False, repr=False)
    seen: int = field(default=0, compare=False, repr=False)

    def to_dict(self) -> dict:
        """The stored fields (not `version`, `seen`), lists and dicts copied one level deep, as
        `asdict` would (its recursive deep copy was a few percent of a creation's CPU)."""
        data = {}
        for name in _STORED:
            value = getattr(self, name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, list):
                value = [list(item) if isinstance(item, list) else item for item in value]
            data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "UploadInfo":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


_STORED = tuple(f.name for f in fields(UploadInfo) if f.name not in ("version", "seen"))


@dataclass
class WriteResult:
    info: UploadInfo  # the upload as stored after the write; its offset is the truth
    received: int  # body bytes read in this request
    interrupted: bool  # the body ended before its announced length


class StoreError(Exception):
    """Base class of storage errors the protocol layer maps to HTTP outcomes."""


class UploadNotFound(StoreError):
    pass


class UploadGone(StoreError):
    """The upload existed but expired (410)."""


class OffsetMismatch(StoreError):
    def __init__(self, expected: int, got: int):
        super().__init__(f"Upload-Offset {got} does not match the stored offset {expected}")
        self.expected = expected
        self.got = got


class LengthExceeded(StoreError):
    """A write would go past the declared length or the size limit (413)."""


class UploadLocked(StoreError):
    """Another request holds this upload (423)."""


class WriteFenced(UploadLocked):
    """A conditional write failed: another request advanced the upload, this one must stop."""


class UploadTakenOver(UploadLocked):
    """Another request asked for the upload; this one stored what it had and let go (400,
    as tusd: the superseded client must not retry)."""


class ServerStopping(StoreError):
    """The server is shutting down; what arrived is stored, retry later (503)."""


class ChecksumMismatch(StoreError):
    """The body did not match Upload-Checksum; nothing of it was kept (460)."""


class StorageUnavailable(StoreError):
    """The storage service cannot be reached or failed; retry later (503)."""


class StoredDataCorrupt(StoreError):
    """A chunk object no longer matches the digest recorded when it was stored."""

    def __init__(self, upload_id: str, chunk_index: int, detail: str):
        super().__init__(f"upload {upload_id} chunk {chunk_index}: {detail}")
        self.upload_id = upload_id
        self.chunk_index = chunk_index


class BodyVerifier(Protocol):
    """Checks a PATCH body as it streams through (the tus checksum extension)."""

    def update(self, data) -> None: ...

    def verify(self) -> bool: ...


class Store(Protocol):
    def create(self, info: UploadInfo) -> UploadInfo: ...

    def get(self, upload_id: str, settle_writer: bool = False,
            patient: bool = False) -> UploadInfo: ...

    def write(self, upload_id: str, offset: int, stream: BinaryIO, length_hint: Optional[int],
              verifier: Optional[BodyVerifier] = None,
              limit: Optional[int] = None, known: Optional[UploadInfo] = None) -> WriteResult: ...

    def declare_length(self, upload_id: str, length: int) -> UploadInfo: ...

    def terminate(self, upload_id: str) -> None: ...

    def open(self, upload_id: str, start: int, end: int) -> Iterator[bytes]: ...

    def list(self) -> list[UploadInfo]: ...

    def list_ids(self) -> list[str]: ...

    def list_page(self, after: Optional[str], limit: int) -> tuple[list[str], Optional[str]]: ...

    def schedule_digest(self, upload_id: str) -> None: ...

    def expire(self, now: float) -> list[str]: ...

    def healthy(self) -> bool: ...
