"""Signed download links: `/files/<id>?exp=<unix time>&sig=<HMAC>`.

Why: a browser following a link (an `<a download>`, a shared URL) cannot send an
`Authorization` header, so a finished file must be reachable by a URL that carries its own
proof. The HMAC-SHA256 covers the upload id, the expiry and the scope (`download`, the only one
a link can grant), so a link cannot be moved to another upload, extended, or turned into a
PATCH or DELETE. The key is `TUS_LINK_SECRET`, else `TUS_JWT_SECRET`; every process of a
deployment shares it, so any worker accepts any link. Deleting the upload ends its links too:
the id then answers 404.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Optional
from urllib.parse import urlencode

from ..config import Settings

LINK_SCOPE = "download"


class LinkInvalid(Exception):
    """The link cannot be used; the message says why."""


def link_key(settings: Settings) -> Optional[bytes]:
    secret = settings.link_secret or settings.jwt_secret
    return secret.encode() if secret else None


def signature(key: bytes, upload_id: str, expires: int, scope: str = LINK_SCOPE) -> str:
    message = f"{upload_id}\n{expires}\n{scope}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_query(settings: Settings, upload_id: str, ttl: Optional[int] = None,
               now: Optional[float] = None) -> Optional[str]:
    """`exp=...&sig=...` for one upload, or None when no link key is configured."""
    key = link_key(settings)
    if key is None:
        return None
    expires = int(time.time() if now is None else now) + (ttl or settings.link_ttl)
    return urlencode({"exp": expires, "sig": signature(key, upload_id, expires)})


def verify_link(settings: Settings, upload_id: str, exp: Optional[str], sig: Optional[str],
                now: Optional[float] = None) -> None:
    """Raises LinkInvalid unless (exp, sig) is a live link for exactly this upload."""
    key = link_key(settings)
    if key is None:
        raise LinkInvalid("signed links are not enabled on this server")
    # ASCII digits only: str.isdigit() also takes `²`, which int() refuses.
    if not exp or not re.fullmatch(r"[0-9]{1,12}", exp) or not sig:
        raise LinkInvalid("the download link is malformed (exp and sig are required)")
    if not hmac.compare_digest(signature(key, upload_id, int(exp)).encode(), sig.encode()):
        raise LinkInvalid("the download link's signature does not match")
    if int(exp) < (time.time() if now is None else now):
        raise LinkInvalid("the download link has expired")
