"""Who may do what: the caller of a request, and the one decision `authorize`.

With `TUS_AUTH=jwt` every request to `/files…` (tus, downloads, listing) names its caller with
`Authorization: Bearer <JWT>` (tokens.py), except a GET carrying a signed link (links.py). A
`before_request` turns that into `g.caller`; routes then ask `authorize(caller, action,
upload)` and never compare owners themselves, so the rules live in one place:

* `sub` owns what it creates (recorded in `UploadInfo.owner`).
* Scopes: `upload` creates, PATCHes, HEADs, DELETEs and concatenates its own uploads;
  `download` GETs its own finished files; `admin` does everything to everyone's.
* Another owner's upload is a 404 with exactly the body of an unknown id, checked before the
  scope, so nobody learns which ids exist. A missing scope on one's own upload is a 403.

`OPTIONS`, `/`, `/config`, `/healthz` and static files stay open: they reveal no upload.
Without access control (`TUS_AUTH=none`, or unset on loopback) the caller is `OPEN`, who may do
everything, as before this module existed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from flask import Flask, g, request

from .. import errors
from ..config import Settings, require_auth_choice
from ..storage.store import UploadInfo
from .links import LINK_SCOPE, LinkInvalid, link_query, verify_link
from .tokens import TokenInvalid, TokenVerifier

log = logging.getLogger("tus_server.auth")
REALM = "tus-minio"

CREATE, WRITE, STATUS, DELETE, CONCAT = "create", "write", "status", "delete", "concat"
DOWNLOAD, LIST = "download", "list"
SCOPE_NEEDED = {CREATE: "upload", WRITE: "upload", STATUS: "upload", DELETE: "upload",
                CONCAT: "upload", DOWNLOAD: "download"}
PROTECTED_BLUEPRINTS = ("tus", "downloads")


@dataclass(frozen=True)
class Caller:
    sub: Optional[str]
    scopes: frozenset[str]
    open: bool = False  # no access control: everything allowed
    link_for: Optional[str] = None  # the upload a signed link grants (download only)

    @property
    def admin(self) -> bool:
        return self.open or "admin" in self.scopes


OPEN = Caller(sub=None, scopes=frozenset(), open=True)


def enabled(settings: Settings) -> bool:
    return settings.auth == "jwt"


def check_mode(settings: Settings) -> None:
    """Refuse an unprotected server reachable from other machines (`require_auth_choice`),
    and say in the log which mode is on."""
    require_auth_choice(settings)
    where = f"{settings.host}:{settings.port}"
    if settings.auth == "jwt":
        log.info("access control on (TUS_AUTH=jwt): /files needs a bearer token")
    elif settings.auth == "none":
        log.warning("TUS_AUTH=none: no access control; anyone who reaches %s can list, read, "
                    "change and delete every upload", where)
    else:
        log.info("no access control (TUS_AUTH unset, HOST %s is loopback): open to this machine "
                 "only; set TUS_AUTH=jwt to require tokens", settings.host)


def install(app: Flask, settings: Settings) -> None:
    """Load the keys once and put the caller of each request on `g` (after `check_mode`)."""
    verifier = TokenVerifier(settings) if enabled(settings) else None

    @app.before_request
    def identify_caller():
        g.caller = OPEN
        if verifier is None or request.method == "OPTIONS" \
                or request.blueprint not in PROTECTED_BLUEPRINTS:
            return
        g.caller = _caller_of_request(verifier, settings)


def _challenge(error: Optional[str] = None, description: Optional[str] = None) -> dict:
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        # RFC 6750 3: error_description is printable ASCII without `"` and `\`; the message
        # may quote a token's header, which the client chose (a newline would break the header).
        text = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in description)
        value += f', error_description="{text}"'
    return {"WWW-Authenticate": value}


def _caller_of_request(verifier: TokenVerifier, settings: Settings) -> Caller:
    header = request.headers.get("Authorization")
    if header is None:
        upload_id = (request.view_args or {}).get("upload_id")
        if request.endpoint == "downloads.download" and "sig" in request.args and upload_id:
            try:
                verify_link(settings, upload_id, request.args.get("exp"), request.args.get("sig"))
            except LinkInvalid as exc:
                raise errors.Forbidden(str(exc)) from None
            return Caller(sub=None, scopes=frozenset({LINK_SCOPE}), link_for=upload_id)
        # RFC 6750 3.1: no error code when the request carried no credentials at all.
        raise errors.Unauthorized("a bearer token is required: send Authorization: Bearer <token>",
                                  headers=_challenge())
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("the Authorization header must be 'Bearer <token>'",
                                  headers=_challenge())
    try:
        identity = verifier.verify(token.strip())
    except TokenInvalid as exc:
        raise errors.Unauthorized(str(exc),
                                  headers=_challenge("invalid_token", str(exc))) from None
    return Caller(sub=identity.sub, scopes=identity.scopes)


def current_caller() -> Caller:
    return g.get("caller", OPEN)


def authorize(caller: Caller, action: str, upload: Optional[UploadInfo] = None) -> None:
    """May `caller` do `action` (to `upload`, when there is one)? Returns or raises.

    Order matters: ownership first, so another owner's upload is a 404 whatever the scopes
    (the same body as an unknown id); then the scope, a 403 that reveals nothing about ids.
    """
    if caller.open:
        return
    if caller.link_for is not None:
        if action != DOWNLOAD or upload is None or upload.id != caller.link_for:
            raise errors.Forbidden("a download link only allows downloading its own file")
        return
    if upload is not None and not caller.admin and upload.owner != caller.sub:
        raise errors.NotFound("upload not found")
    if caller.admin:
        return
    if action == LIST:
        if not caller.scopes & {"upload", "download"}:
            raise _insufficient("upload")
        return
    needed = SCOPE_NEEDED[action]
    if needed not in caller.scopes:
        raise _insufficient(needed)


def _insufficient(scope: str) -> errors.Forbidden:
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
    return errors.Forbidden(f"the token lacks the {scope!r} scope needed here",
                            headers={"WWW-Authenticate": challenge})


def may_see(caller: Caller, upload: UploadInfo) -> bool:
    """For listings: whether `upload` belongs in what `caller` is shown."""
    try:
        authorize(caller, LIST, upload)
    except errors.TusError:
        return False
    return True


def owner_of_new_upload(caller: Caller) -> Optional[str]:
    return caller.sub


def download_query(settings: Settings, caller: Caller, upload_id: str) -> Optional[str]:
    """`exp=…&sig=…` to append to a download URL shown to this caller; None with auth off."""
    if caller.open or not enabled(settings):
        return None
    return link_query(settings, upload_id)
