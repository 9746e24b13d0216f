"""Bearer tokens: verifying a JWT into (sub, scopes), and minting one for scripts and tests.

PyJWT does the cryptography; this module only decides which keys and algorithms are accepted.
The algorithm is never taken from the token alone: HS256 is checked with `TUS_JWT_SECRET`,
RS256/ES256 with the public key in `TUS_JWT_PUBLIC_KEY` (so an existing identity provider can
issue tokens), and a token naming any other algorithm is refused. That rules out the classic
confusions (`alg: none`, an HS256 token "signed" with the public key as its secret).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Optional

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import ConfigError, Settings

SCOPES = ("upload", "download", "admin")
# Clocks of the issuer and this server differ a little; `exp` is honoured to the same margin.
LEEWAY_SECONDS = 30
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key of at least 256 bits


class TokenInvalid(Exception):
    """The token cannot be used; the message says why (it goes into the 401 body)."""


@dataclass(frozen=True)
class Identity:
    sub: str
    scopes: frozenset[str]


def _public_key(path: str):
    try:
        with open(path, "rb") as handle:
            key = load_pem_public_key(handle.read())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"TUS_JWT_PUBLIC_KEY {path!r} is not a readable PEM public key: "
                          f"{exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ConfigError(f"TUS_JWT_PUBLIC_KEY {path!r} must be an RSA or P-256 EC public key")


class TokenVerifier:
    """Built once per app from the settings (the key file is read at start, not per request)."""

    def __init__(self, settings: Settings):
        self.keys: dict[str, object] = {}
        if settings.jwt_secret:
            if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"TUS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                    "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
            self.keys["HS256"] = settings.jwt_secret.encode()
        if settings.jwt_public_key:
            algorithm, key = _public_key(settings.jwt_public_key)
            self.keys[algorithm] = key
        if not self.keys:
            raise ConfigError("TUS_AUTH=jwt needs TUS_JWT_SECRET (HS256) or TUS_JWT_PUBLIC_KEY "
                              "(a PEM file, RS256 or ES256)")
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None

    def verify(self, token: str) -> Identity:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise TokenInvalid("the token is malformed (not a JWT)") from None
        key = self.keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            raise TokenInvalid(f"the token's algorithm {str(algorithm)[:20]!r} is not accepted "
                               f"here (accepted: {', '.join(sorted(self.keys))})")
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid(f"the token is not meant for this server (aud must be "
                               f"{self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid(f"the token's issuer is not {self.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"the token is invalid: {str(exc)[:120]}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise TokenInvalid("the token's 'sub' claim must be a non-empty string")
        return Identity(sub=sub, scopes=parse_scopes(claims.get("scope", claims.get("scp"))))


def parse_scopes(raw) -> frozenset[str]:
    """OAuth's space-separated `scope` string, or a list (`scp`, as some providers send)."""
    if isinstance(raw, str):
        items = raw.split()
    elif isinstance(raw, list):
        items = [item for item in raw if isinstance(item, str)]
    else:
        items = []
    return frozenset(item for item in items if item in SCOPES)


_TTL = re.compile(r"([0-9]+)([smhdw]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_ttl(text: str) -> int:
    """`90`, `90s`, `15m`, `1h`, `7d`, `2w` -> seconds."""
    match = _TTL.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"a lifetime looks like 90s, 15m, 1h, 7d or 2w, got {text!r}")
    return int(match.group(1)) * _UNIT[match.group(2)]


def mint_token(settings: Settings, sub: str, scopes: str, ttl: int,
               now: Optional[float] = None) -> str:
    """An HS256 token signed with TUS_JWT_SECRET (tokens for RS256/ES256 come from whoever
    holds the private key)."""
    if not settings.jwt_secret:
        raise ConfigError("minting a token needs TUS_JWT_SECRET")
    unknown = set(scopes.split()) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; use {' '.join(SCOPES)}")
    now = int(time.time() if now is None else now)
    claims = {"sub": sub, "scope": " ".join(scopes.split()), "iat": now, "exp": now + ttl}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.encode(), algorithm="HS256")
