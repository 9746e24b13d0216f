"""The tus checksum extension: `Upload-Checksum: <algorithm> <base64 digest>`."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from typing import Optional

from ..errors import BadRequest

ALGORITHMS = ("sha1", "sha256", "sha512", "md5", "crc32")


class _Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class ChecksumVerifier:
    """Hashes a body as it streams through and compares it with the announced digest."""

    def __init__(self, algorithm: str, expected: bytes):
        self.algorithm = algorithm
        self.expected = expected
        self._hash = _Crc32() if algorithm == "crc32" else hashlib.new(algorithm)

    def update(self, data) -> None:
        self._hash.update(data)

    def verify(self) -> bool:
        return hmac.compare_digest(self._hash.digest(), self.expected)


def parse_upload_checksum(raw: Optional[str]) -> Optional[ChecksumVerifier]:
    if raw is None:
        return None
    parts = raw.strip().split(" ")
    if len(parts) != 2:
        raise BadRequest("Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm, encoded = parts[0].lower(), parts[1]
    if algorithm not in ALGORITHMS:
        raise BadRequest(f"checksum algorithm {parts[0][:20]!r} is not supported "
                         f"(supported: {','.join(ALGORITHMS)})")
    try:
        expected = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum digest is not valid base64") from None
    return ChecksumVerifier(algorithm, expected)
