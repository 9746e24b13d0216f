"""File names that are safe to use, and metadata values as text, shared by the server and the
client without imports.

The server reduces the `filename` metadata to a base name for object keys and headers; the CLI
reduces the name a server sends in `Content-Disposition` before creating a file with it. Both
must agree, and the CLI must not import Flask to get it, so the rule lives here alone.
"""
from __future__ import annotations

import base64
import binascii
import unicodedata
from typing import Optional


def safe_filename(name: Optional[str], fallback: str = "upload") -> str:
    """A base name safe for an object key and a header: no path, no control characters."""
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    encoded = name.encode("utf-8")
    if len(encoded) > 200:
        name = encoded[:200].decode("utf-8", "ignore")
    return name or fallback


def metadata_text(metadata: dict[str, Optional[str]], key: str) -> Optional[str]:
    """The decoded UTF-8 text of one metadata value (None if absent or not text)."""
    value = metadata.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(value).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
