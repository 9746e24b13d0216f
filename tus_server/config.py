"""Settings: read once from the environment, passed explicitly everywhere else."""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

MIB = 1024 * 1024
TIB = 1024 ** 4
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# An exact origin: scheme, host name, IPv4 or bracketed IPv6 address, optional port; no path.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?",
                     re.IGNORECASE)


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """TUS_CORS_ORIGINS: `*` alone, or exact origins. Refused at start when an entry is not
    `scheme://host[:port]`, because flask-cors would read `*`, `[`, `?`... as a regex and let
    in origins nobody listed."""
    origins = _list(env, "TUS_CORS_ORIGINS")
    if origins == ("*",):
        return origins
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError("TUS_CORS_ORIGINS entries must be exact origins like "
                              "https://app.example.com:8443 (or the single value *), "
                              f"got {origin!r}")
    return origins


def _auth_mode(env: Mapping[str, str]) -> str:
    raw = env.get("TUS_AUTH", "").strip().lower()
    if raw not in ("", "jwt", "none"):
        raise ConfigError(f"TUS_AUTH must be 'jwt' or 'none', got {raw!r}")
    return raw


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = "minioadmin"
    minio_secret_key: str = "minioadmin"
    minio_secure: bool = False
    minio_region: str = "us-east-1"
    # Size of the chunk objects; fixed per upload at creation.
    chunk_size: int = 5 * MIB
    # Largest upload; 1 TiB fits a machine's disk and stops a client from reserving an upload
    # of 2^64-1 bytes. 0 (set explicitly) means no limit: Tus-Max-Size is then not sent.
    max_size: int = TIB
    # Most partial uploads one final upload may name (each is read at creation).
    max_partials: int = 100
    # Seconds after the last successful PATCH before an unfinished upload expires; 0 = never.
    expiration: int = 24 * 3600
    # Seconds a finished upload is kept; 0 = forever.
    retention: int = 0
    # Seconds between background sweeps of expired uploads in the app; 0 = no sweeper thread.
    cleanup_interval: int = 600
    allowed_types: tuple[str, ...] = ()
    require_filename: bool = False
    # Largest Upload-Metadata header accepted, in bytes.
    max_metadata_size: int = 4096
    cors_origins: tuple[str, ...] = ()
    # Host header names accepted (port ignored; `.example.com` also takes its subdomains).
    # () = derived from `host`, see `accepted_hosts`; ("*",) = any.
    trusted_hosts: tuple[str, ...] = ()
    # Trust one proxy's X-Forwarded-For/-Proto/-Host/-Prefix (werkzeug's ProxyFix).
    behind_proxy: bool = False
    # "bucket": one bucket per upload (the default); "prefix": one prefix per upload in `bucket`.
    layout: str = "bucket"
    bucket: str = "tus-uploads"
    # Seconds a cross-process upload lock lives without renewal (a dead holder blocks this long).
    lock_lease: int = 30
    # Seconds a request waits for the holder of a busy upload to hand it over (the holder
    # stores what it has and lets go) before answering 423 Locked.
    handover_wait: float = 5.0
    # Seconds of silence after which a request body is given up: what arrived is kept.
    body_timeout: float = 60.0
    # Seconds a stopping worker gives running PATCHes to store what arrived and answer 503.
    shutdown_timeout: float = 10.0
    # Chunk buffers per PATCH: one receives while the others are being put to MinIO (2 = one
    # PUT in flight; more buffers let several chunk PUTs of one PATCH run side by side).
    write_buffers: int = 2
    # Seconds clients are told to wait (Retry-After) when MinIO is unreachable.
    retry_after: int = 5
    # Path to the npm-installed Uppy dist folder served at /vendor/uppy/.
    uppy_dist: str = field(default_factory=lambda: os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "node_modules", "uppy", "dist"))
    # Access control (auth.py). "" = not chosen: open on loopback, refused elsewhere;
    # "jwt" = bearer tokens required on /files; "none" = open on purpose.
    auth: str = ""
    # HS256 secret, and/or a PEM public key file for RS256/ES256 (an identity provider's).
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    # HMAC key of signed download links (falls back to jwt_secret) and their lifetime.
    link_secret: str = ""
    link_ttl: int = 3600
    # Per-owner limits with auth on; 0 = none.
    max_uploads_per_owner: int = 0
    max_bytes_per_owner: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        layout = env.get("TUS_LAYOUT", defaults.layout).strip() or defaults.layout
        if layout not in ("bucket", "prefix"):
            raise ConfigError(f"TUS_LAYOUT must be 'bucket' or 'prefix', got {layout!r}")
        settings = cls(
            host=env.get("HOST", defaults.host),
            port=_int(env, "PORT", defaults.port, 1),
            minio_endpoint=env.get("MINIO_ENDPOINT", defaults.minio_endpoint),
            minio_access_key=env.get("MINIO_ACCESS_KEY", env.get("MINIO_ROOT_USER", defaults.minio_access_key)),
            minio_secret_key=env.get("MINIO_SECRET_KEY", env.get("MINIO_ROOT_PASSWORD", defaults.minio_secret_key)),
            minio_secure=_bool(env, "MINIO_SECURE", defaults.minio_secure),
            minio_region=env.get("MINIO_REGION", defaults.minio_region),
            chunk_size=_int(env, "TUS_CHUNK_SIZE", defaults.chunk_size, 1),
            max_size=_int(env, "TUS_MAX_SIZE", defaults.max_size),
            expiration=_int(env, "TUS_EXPIRATION", defaults.expiration),
            retention=_int(env, "TUS_RETENTION", defaults.retention),
            cleanup_interval=_int(env, "TUS_CLEANUP_INTERVAL", defaults.cleanup_interval),
            allowed_types=_list(env, "TUS_ALLOWED_TYPES"),
            require_filename=_bool(env, "TUS_REQUIRE_FILENAME", defaults.require_filename),
            max_metadata_size=_int(env, "TUS_MAX_METADATA_SIZE", defaults.max_metadata_size, 1),
            cors_origins=_origins(env),
            trusted_hosts=_list(env, "TUS_TRUSTED_HOSTS"),
            behind_proxy=_bool(env, "TUS_BEHIND_PROXY", defaults.behind_proxy),
            max_partials=_int(env, "TUS_MAX_PARTIALS", defaults.max_partials, 1),
            layout=layout,
            bucket=env.get("TUS_BUCKET", defaults.bucket),
            lock_lease=_int(env, "TUS_LOCK_LEASE", defaults.lock_lease, 1),
            handover_wait=_float(env, "TUS_HANDOVER_WAIT", defaults.handover_wait),
            body_timeout=_float(env, "TUS_BODY_TIMEOUT", defaults.body_timeout, 0.1),
            shutdown_timeout=_float(env, "TUS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout),
            retry_after=_int(env, "TUS_RETRY_AFTER", defaults.retry_after, 1),
            write_buffers=_int(env, "TUS_WRITE_BUFFERS", defaults.write_buffers, 2),
            uppy_dist=env.get("TUS_UPPY_DIST", defaults.uppy_dist),
            auth=_auth_mode(env),
            jwt_secret=env.get("TUS_JWT_SECRET", ""),
            jwt_public_key=env.get("TUS_JWT_PUBLIC_KEY", "").strip(),
            jwt_audience=env.get("TUS_JWT_AUDIENCE", "").strip(),
            jwt_issuer=env.get("TUS_JWT_ISSUER", "").strip(),
            link_secret=env.get("TUS_LINK_SECRET", ""),
            link_ttl=_int(env, "TUS_LINK_TTL", defaults.link_ttl, 1),
            max_uploads_per_owner=_int(env, "TUS_MAX_UPLOADS_PER_OWNER", 0),
            max_bytes_per_owner=_int(env, "TUS_MAX_BYTES_PER_OWNER", 0),
        )
        return settings

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

    def accepted_hosts(self) -> tuple[str, ...]:
        """Host names requests may name; () = any.

        A server bound to loopback is only meant for this machine, so it answers only to
        loopback names: a page on another site whose DNS name was re-pointed at 127.0.0.1
        (DNS rebinding) sends its own name as Host and is refused. A server bound to another
        address cannot know the names it is reached by, so it takes any unless told.
        """
        if self.trusted_hosts:
            return () if "*" in self.trusted_hosts else tuple(h.lower() for h in self.trusted_hosts)
        if not is_loopback(self.host):
            return ()
        bound = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return tuple(dict.fromkeys((bound.lower(),) + LOOPBACK_NAMES))
