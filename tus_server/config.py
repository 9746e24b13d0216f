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


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _header_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma list of header names; anything else stops the server at start rather than
    being matched in a way nobody meant."""
    names = _list(env, name)
    for header in names:
        if not _HEADER_NAME.fullmatch(header):
            raise ConfigError(f"{name} entries must be header names, got {header!r}")
    return names


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


HOOK_EVENTS = ("pre-create", "post-create", "post-receive", "pre-finish", "post-finish",
               "pre-terminate", "post-terminate")


def _hook_events(env: Mapping[str, str], default: tuple[str, ...]) -> tuple[str, ...]:
    """TUS_HOOKS_ENABLED: a comma list of tusd's event names; empty = tusd's default set."""
    events = _list(env, "TUS_HOOKS_ENABLED")
    unknown = [name for name in events if name not in HOOK_EVENTS]
    if unknown:
        raise ConfigError(f"TUS_HOOKS_ENABLED: unknown hook event {unknown[0]!r} "
                          f"(known: {', '.join(HOOK_EVENTS)})")
    return events or default


def _hooks_url(env: Mapping[str, str], default: str) -> str:
    url = env.get("TUS_HOOKS_URL", "").strip() or default
    if url and not re.match(r"https?://[^/\s]+", url, re.IGNORECASE):
        raise ConfigError(f"TUS_HOOKS_URL must be an http:// or https:// URL, got {url[:80]!r}")
    return url


def _system_bucket(env: Mapping[str, str], default: str) -> str:
    """TUS_SYSTEM_BUCKET must be a valid bucket name that no upload id can ever take."""
    name = env.get("TUS_SYSTEM_BUCKET", "").strip() or default
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name) or name.startswith("tus-"):
        raise ConfigError("TUS_SYSTEM_BUCKET must be a bucket name (3-63 of a-z 0-9 . -) not "
                          f"starting with 'tus-' (upload ids do), got {name!r}")
    return name


def _addressing_style(env: Mapping[str, str], default: str) -> str:
    value = env.get("MINIO_ADDRESSING_STYLE", "").strip().lower() or default
    if value not in ("auto", "path", "virtual"):
        raise ConfigError(f"MINIO_ADDRESSING_STYLE must be 'auto', 'path' or 'virtual', "
                          f"got {value!r}")
    return value


def _log_format(env: Mapping[str, str], default: str) -> str:
    value = env.get("TUS_LOG_FORMAT", "").strip().lower() or default
    if value not in ("text", "json"):
        raise ConfigError(f"TUS_LOG_FORMAT must be 'text' or 'json', got {value!r}")
    return value


def _auth_mode(env: Mapping[str, str]) -> str:
    raw = env.get("TUS_AUTH", "").strip().lower()
    if raw not in ("", "jwt", "none"):
        raise ConfigError(f"TUS_AUTH must be 'jwt' or 'none', got {raw!r}")
    return raw


def default_uppy_dist() -> str:
    """Where Uppy's browser files are: `tus_server/vendor/uppy/` in an installed wheel (setup.py
    copies them there from the npm package at build time), else `node_modules/uppy/dist` of
    the checkout this package runs from (an editable install, `make run`, the tests)."""
    package = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(package, "vendor", "uppy")
    if os.path.isfile(os.path.join(packaged, "uppy.min.mjs")):
        return packaged
    return os.path.join(os.path.dirname(package), "node_modules", "uppy", "dist")


def require_auth_choice(settings: "Settings") -> None:
    """Secure by default: a server reachable from other machines must say whether it wants
    access control. Raises ConfigError (the server does not start) when it did not. Here, not
    in access/auth.py, so that `tus-minio serve` can refuse before it starts gunicorn."""
    if settings.auth or is_loopback(settings.host):
        return
    raise ConfigError(
        f"HOST={settings.host} is reachable from other machines and TUS_AUTH is not set. "
        "Choose: TUS_AUTH=jwt (with TUS_JWT_SECRET or TUS_JWT_PUBLIC_KEY) to require "
        "bearer tokens, or TUS_AUTH=none to serve without access control on purpose.")


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
    # "auto" (virtual-host style for AWS and Aliyun hosts, path style elsewhere), "path", "virtual".
    minio_addressing_style: str = "auto"
    # Seconds a MinIO request may wait for an answer (between two reads of its response).
    minio_timeout: float = 15.0
    # Seconds a complete chunk's PUT may wait for MinIO's answer once its body is sent, before
    # its bytes are stored as a stand-in piece instead (storage/parts.py); 0 never waits.
    chunk_answer_timeout: float = 3.0
    # Run although the S3 server fails the conditional-write probe (storage/probe.py).
    unsafe_s3: bool = False
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
    # Seconds a PATCH that leaves its upload unfinished keeps the lock and the state for the
    # next PATCH through this process (storage/kept_locks.py; 0 = released at once).
    lock_keep: float = 0.5
    # Seconds between this process's heartbeat writes (storage/instances.py; 0 = none, locks
    # of a dead process then wait out the lease), and the heartbeat age, by MinIO's clock,
    # at which a process counts as dead and its locks are taken over.
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 2.0
    # Seconds of silence after which a request body is given up: what arrived is kept.
    body_timeout: float = 60.0
    # Seconds a stopping worker gives running PATCHes to store what arrived and answer 503.
    shutdown_timeout: float = 10.0
    # gevent worker: seconds a new connection has to send a request's headers in full, and
    # the open connections per worker past which the one idle longest is closed (503 with
    # Retry-After when every one is in a request).
    header_timeout: float = 10.0
    max_connections: int = 4000
    # Chunk buffers per PATCH: one receives while the others are being put to MinIO (2 = one
    # PUT in flight; more buffers let several chunk PUTs of one PATCH run side by side).
    write_buffers: int = 4
    # Seconds clients are told to wait (Retry-After) when MinIO is unreachable.
    retry_after: int = 5
    # The Uppy files served at /vendor/uppy/: the copy a built wheel ships, else the checkout's
    # npm install.
    uppy_dist: str = field(default_factory=default_uppy_dist)
    # Request headers browsers may send cross-origin besides the tus ones (tusd's
    # `-cors-allow-headers`): a page's own `X-Tenant`, tracing headers...
    cors_allow_headers: tuple[str, ...] = ()
    # ------------------------------------------------------------ hooks, metrics, logs
    # tusd-compatible HTTP hooks: the endpoint ("" = no hooks) and the events sent to it
    # (tusd's default set; pre-finish and pre-terminate are opt-in, as in tusd).
    hooks_url: str = ""
    hooks_enabled: tuple[str, ...] = ("pre-create", "post-create", "post-receive",
                                      "post-terminate", "post-finish")
    # Request headers copied to the hook request (tusd's -hooks-http-forward-headers).
    hooks_forward_headers: tuple[str, ...] = ()
    # Seconds one hook request may take; retries (with doubling backoff from `hooks_backoff`)
    # after a connection error or a 5xx answer.
    hooks_timeout: float = 15.0
    hooks_retries: int = 3
    hooks_backoff: float = 1.0
    # Largest hook response body read, in bytes (tusd's -hooks-http-size-limit).
    hooks_size_limit: int = 64 * 1024
    # post-receive is sent at most once per this many seconds per upload.
    hooks_progress_interval: float = 1.0
    # Bucket of the durable hook outbox (never an upload id: those start with `tus-`).
    system_bucket: str = "tusminio-system"
    # Seconds between scans of the outbox, and the longest wait between two delivery attempts.
    hooks_outbox_poll: float = 5.0
    hooks_outbox_max_backoff: float = 600.0
    # GET /metrics (Prometheus text); 0 turns it off.
    metrics: bool = True
    # "text" (human-readable) or "json" (one JSON object per line).
    log_format: str = "text"
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
            minio_addressing_style=_addressing_style(env, defaults.minio_addressing_style),
            minio_timeout=_float(env, "TUS_MINIO_TIMEOUT", defaults.minio_timeout, 1),
            chunk_answer_timeout=_float(env, "TUS_CHUNK_ANSWER_TIMEOUT",
                                        defaults.chunk_answer_timeout),
            unsafe_s3=_bool(env, "TUS_UNSAFE_S3", defaults.unsafe_s3),
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
            lock_keep=_float(env, "TUS_LOCK_KEEP", defaults.lock_keep),
            heartbeat_interval=_float(env, "TUS_HEARTBEAT_INTERVAL",
                                      defaults.heartbeat_interval),
            heartbeat_timeout=_float(env, "TUS_HEARTBEAT_TIMEOUT", defaults.heartbeat_timeout,
                                     1.0),
            body_timeout=_float(env, "TUS_BODY_TIMEOUT", defaults.body_timeout, 0.1),
            shutdown_timeout=_float(env, "TUS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout),
            header_timeout=_float(env, "TUS_HEADER_TIMEOUT", defaults.header_timeout, 0.1),
            max_connections=_int(env, "TUS_MAX_CONNECTIONS", defaults.max_connections, 1),
            retry_after=_int(env, "TUS_RETRY_AFTER", defaults.retry_after, 1),
            write_buffers=_int(env, "TUS_WRITE_BUFFERS", defaults.write_buffers, 2),
            uppy_dist=env.get("TUS_UPPY_DIST", defaults.uppy_dist),
            cors_allow_headers=_header_names(env, "TUS_CORS_ALLOW_HEADERS"),
            hooks_url=_hooks_url(env, defaults.hooks_url),
            hooks_enabled=_hook_events(env, defaults.hooks_enabled),
            hooks_forward_headers=_list(env, "TUS_HOOKS_FORWARD_HEADERS"),
            hooks_timeout=_float(env, "TUS_HOOKS_TIMEOUT", defaults.hooks_timeout, 0.01),
            hooks_retries=_int(env, "TUS_HOOKS_RETRIES", defaults.hooks_retries),
            hooks_backoff=_float(env, "TUS_HOOKS_BACKOFF", defaults.hooks_backoff),
            hooks_size_limit=_int(env, "TUS_HOOKS_SIZE_LIMIT", defaults.hooks_size_limit, 1),
            hooks_progress_interval=_float(env, "TUS_HOOKS_PROGRESS_INTERVAL",
                                           defaults.hooks_progress_interval),
            system_bucket=_system_bucket(env, defaults.system_bucket),
            hooks_outbox_poll=_float(env, "TUS_HOOKS_OUTBOX_POLL", defaults.hooks_outbox_poll,
                                     0.05),
            hooks_outbox_max_backoff=_float(env, "TUS_HOOKS_OUTBOX_MAX_BACKOFF",
                                            defaults.hooks_outbox_max_backoff, 0.01),
            metrics=_bool(env, "TUS_METRICS", defaults.metrics),
            log_format=_log_format(env, defaults.log_format),
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
        if settings.heartbeat_interval and \
                settings.heartbeat_timeout < settings.heartbeat_interval + 0.5:
            # Room for a beat that is late (a busy process, a slow PUT); the age read never
            # exceeds the true age (storage/instances.py).
            raise ConfigError("TUS_HEARTBEAT_TIMEOUT must exceed TUS_HEARTBEAT_INTERVAL by at "
                              f"least 0.5 s, got {settings.heartbeat_timeout} and "
                              f"{settings.heartbeat_interval}")
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
