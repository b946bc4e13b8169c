"""Every setting of the platform, read from the environment here and only here."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
SERVICES_FILE = "services.json"


def env(name: str, default: str | None = None) -> str | None:
    """One environment variable, empty counting as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = env(name)
    number = int(value) if value is not None else default
    if minimum is not None and number < minimum:
        raise RuntimeError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float) -> float:
    value = env(name)
    return float(value) if value is not None else default


def instance_path() -> Path:
    return Path(env("INSTANCE_PATH", str(DEFAULT_INSTANCE)))


def embedded_services(instance: Path) -> dict[str, str]:
    """URLs of the embedded PostgreSQL and Redis that `make run` started, if any."""
    try:
        return json.loads((instance / SERVICES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def jwt_secret(instance: Path) -> str:
    """The signing secret: JWT_SECRET_KEY, or one generated once and kept under instance/."""
    configured = env("JWT_SECRET_KEY")
    if configured is not None:
        if len(configured.encode()) < 32:
            raise RuntimeError("JWT_SECRET_KEY must be at least 32 bytes long")
        return configured
    path = instance / "jwt-secret"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def database_url(instance: Path) -> str | None:
    return env("DATABASE_URL") or embedded_services(instance).get("database_url")


def redis_url(instance: Path) -> str | None:
    return env("REDIS_URL") or embedded_services(instance).get("redis_url")


def normalize_database_url(url: str) -> str:
    """SQLAlchemy URL using psycopg 3 whatever scheme the operator wrote."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load() -> dict[str, Any]:
    """The application settings from the environment (and instance/ in development)."""
    instance = instance_path()
    db_url = database_url(instance)
    r_url = redis_url(instance)
    return {
        "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URL": normalize_database_url(db_url) if db_url else None,
        "REDIS_URL": r_url,
        "BROKER_URL": env("BROKER_URL", r_url),
        "JWT_SECRET_KEY": jwt_secret(instance),
        "JWT_ACCESS_TOKEN_MINUTES": env_int("JWT_ACCESS_TOKEN_MINUTES", 60, minimum=1),
        "JWT_REFRESH_TOKEN_DAYS": env_int("JWT_REFRESH_TOKEN_DAYS", 30, minimum=1),
        "CACHE_TTL_SECONDS": env_int("CACHE_TTL_SECONDS", 3600),
        "REDIS_SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 0.5),
        # Per web process: copies of cached answers kept coherent by Redis (0 turns it off).
        "NEAR_CACHE_MAX_BYTES": env_int("NEAR_CACHE_MAX_BYTES", 64 * 1024 * 1024),
        "EXPORT_DIR": env("EXPORT_DIR", str(instance / "exports")),
        "EXPORT_RETENTION_DAYS": env_int("EXPORT_RETENTION_DAYS", 7),
        "EXPORT_LINK_TTL_SECONDS": env_int("EXPORT_LINK_TTL_SECONDS", 24 * 3600),
        "EXPORT_SYNC_MAX_ROWS": env_int("EXPORT_SYNC_MAX_ROWS", 10_000),
        # Export links are signed with this key, or with JWT_SECRET_KEY when it is unset.
        "EXPORT_SIGNING_KEY": env("EXPORT_SIGNING_KEY"),
        "PUBLIC_BASE_URL": env("PUBLIC_BASE_URL"),
        "WS_PING_INTERVAL": env_float("WS_PING_INTERVAL", 25.0),
        # Each open socket holds a thread of its web process (gunicorn.conf.py: 64): the rest serve REST.
        "WS_MAX_SOCKETS_PER_PROCESS": env_int("WS_MAX_SOCKETS_PER_PROCESS", 48, minimum=1),
        "WS_MAX_SOCKETS_PER_ORG": env_int("WS_MAX_SOCKETS_PER_ORG", 32, minimum=1),
        "WS_ALLOWED_ORIGINS": [o for o in (env("WS_ALLOWED_ORIGINS", "") or "").split(",") if o],
        "AGGREGATION_ASYNC_THRESHOLD": env_int("AGGREGATION_ASYNC_THRESHOLD", 2_000_000),
        "ROLLUP_EXACT_PERCENTILE_MAX": env_int("ROLLUP_EXACT_PERCENTILE_MAX", 200_000),
        "ANALYTICS_STATEMENT_TIMEOUT_MS": env_int("ANALYTICS_STATEMENT_TIMEOUT_MS", 30_000),
        "MAX_CONTENT_LENGTH": env_int("MAX_CONTENT_LENGTH", 50 * 1024 * 1024),
        "JOB_MAX_ATTEMPTS": env_int("JOB_MAX_ATTEMPTS", 3),
        # A job still queued this long whose message the broker no longer holds is sent again.
        "JOB_REQUEUE_AFTER_SECONDS": env_int("JOB_REQUEUE_AFTER_SECONDS", 60),
        "EXPORT_MAX_ACTIVE_PER_ORG": env_int("EXPORT_MAX_ACTIVE_PER_ORG", 3),
        "TOKEN_REVOCATION_CACHE_SECONDS": env_int("TOKEN_REVOCATION_CACHE_SECONDS", 10),
        "IMPORT_MAX_BYTES": env_int("IMPORT_MAX_BYTES", 5 * 1024 * 1024),
        "IMPORT_MAX_ROWS": env_int("IMPORT_MAX_ROWS", 10_000),
        "SNAPSHOT_GRACE_MINUTES": env_int("SNAPSHOT_GRACE_MINUTES", 10),
        "RATE_LIMITS_PER_MINUTE": {
            "analytics": env_int("RATE_LIMIT_ANALYTICS_PER_MINUTE", 60_000),
            "jobs": env_int("RATE_LIMIT_JOBS_PER_MINUTE", 1_200),
            "exports": env_int("RATE_LIMIT_EXPORTS_PER_MINUTE", 300),
        },
        "LOG_LEVEL": env("LOG_LEVEL", "INFO"),
        "PORT": env_int("PORT", 8000),
    }
