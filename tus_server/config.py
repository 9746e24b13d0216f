"""Settings: read once from the environment, passed explicitly everywhere else."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

MIB = 1024 * 1024


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
    # 0 means no limit (Tus-Max-Size is then not sent).
    max_size: int = 0
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
            cors_origins=_list(env, "TUS_CORS_ORIGINS"),
            layout=layout,
            bucket=env.get("TUS_BUCKET", defaults.bucket),
            lock_lease=_int(env, "TUS_LOCK_LEASE", defaults.lock_lease, 1),
            handover_wait=_float(env, "TUS_HANDOVER_WAIT", defaults.handover_wait),
            body_timeout=_float(env, "TUS_BODY_TIMEOUT", defaults.body_timeout, 0.1),
            shutdown_timeout=_float(env, "TUS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout),
            retry_after=_int(env, "TUS_RETRY_AFTER", defaults.retry_after, 1),
            write_buffers=_int(env, "TUS_WRITE_BUFFERS", defaults.write_buffers, 2),
            uppy_dist=env.get("TUS_UPPY_DIST", defaults.uppy_dist),
        )
        return settings

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)
