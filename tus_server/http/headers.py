"""Parsing and formatting of tus header values; every failure is a `BadRequest` with a reason."""
from __future__ import annotations

import base64
import binascii
import re
from email.utils import formatdate
from typing import Optional

from ..errors import BadRequest, MetadataTooLarge
from ..names import (  # noqa: F401  (re-exported: the rules live in names.py)
    metadata_text,
    safe_filename,
)

UINT64_MAX = 2**64 - 1
_DIGITS = re.compile(r"^[0-9]+$")
_METADATA_KEY = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")  # printable ASCII, no space, no comma
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


def parse_uint(name: str, raw: Optional[str]) -> Optional[int]:
    """A plain non-negative decimal integer that fits in 64 bits, or None when absent."""
    if raw is None:
        return None
    value = raw.strip()
    if not _DIGITS.match(value):
        raise BadRequest(f"{name} must be a non-negative integer, got {raw[:40]!r}")
    if len(value) > 20 or int(value) > UINT64_MAX:
        raise BadRequest(f"{name} is too large")
    return int(value)


def parse_metadata(raw: Optional[str], max_size: int) -> dict[str, Optional[str]]:
    """`key base64,key2 base64,key3` -> {key: base64 value or None}, validated.

    Values are kept in their base64 form so HEAD echoes them exactly as created.
    """
    if raw is None or not raw.strip():
        return {}
    if len(raw) > max_size:
        raise MetadataTooLarge(f"Upload-Metadata is larger than {max_size} bytes")
    result: dict[str, Optional[str]] = {}
    for pair in raw.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise BadRequest(f"Upload-Metadata pair {pair.strip()[:40]!r} is not 'key base64value'")
        key = parts[0]
        if not _METADATA_KEY.match(key):
            raise BadRequest(f"Upload-Metadata key {key[:40]!r} must be ASCII without spaces or commas")
        if key in result:
            raise BadRequest(f"Upload-Metadata key {key[:40]!r} appears twice")
        value = parts[1] if len(parts) == 2 else None
        if value is not None:
            if not _BASE64.match(value) or len(value) % 4:
                raise BadRequest(f"Upload-Metadata value of {key[:40]!r} is not valid base64")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"Upload-Metadata value of {key[:40]!r} is not valid base64") from None
        result[key] = value
    return result


def encode_metadata(metadata: dict[str, Optional[str]]) -> str:
    return ",".join(key if value is None else f"{key} {value}" for key, value in metadata.items())


def is_media_type(value: Optional[str]) -> bool:
    return bool(value) and bool(_MEDIA_TYPE.fullmatch(value))


_PARAM_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_QUOTED = re.compile(r'^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$')


def content_type_of(file_type: Optional[str]) -> Optional[str]:
    """A client's `filetype` as a Content-Type to serve, or None when its media type is invalid.

    Parameters such as `charset=utf-8` decide how a text file is shown, so the valid ones are
    kept (token names, token or quoted-string values); a malformed parameter is dropped rather
    than echoed into a response header.
    """
    if not file_type:
        return None
    essence, *params = file_type.split(";")
    essence = essence.strip()
    if not is_media_type(essence):
        return None
    kept = []
    for param in params:
        name, sep, value = param.strip().partition("=")
        name, value = name.strip(), value.strip()
        if sep and _PARAM_TOKEN.fullmatch(name) and (_PARAM_TOKEN.fullmatch(value)
                                                     or _QUOTED.fullmatch(value)):
            kept.append(f"{name.lower()}={value}")
    return "; ".join([essence] + kept)


def type_allowed(file_type: Optional[str], allowed: tuple[str, ...]) -> bool:
    """`image/*,application/pdf` style matching; an empty list allows everything."""
    if not allowed:
        return True
    served = content_type_of(file_type)  # `text/plain; charset=utf-8` is a text/plain file
    if served is None:
        return False
    file_type = served.split(";")[0].lower()
    for rule in allowed:
        rule = rule.lower()
        if rule.endswith("/*") and file_type.startswith(rule[:-1]):
            return True
        if rule == file_type:
            return True
    return False


def repr_digest(sha256_hex: str) -> str:
    """`Repr-Digest` (RFC 9530) of the whole file from the SHA-256 we keep, as hex."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def http_date(timestamp: float) -> str:
    """RFC 9110 IMF-fixdate, e.g. `Wed, 25 Jun 2014 16:00:00 GMT`."""
    return formatdate(timestamp, usegmt=True)
