"""Every setting of the platform and its default, read from the environment here and only here.

`from_environment()` is the whole list and reads no file; `load()` completes it from instance/ (the
URLs of the embedded servers `make run` started, the JWT secret generated on first use). Nothing here
runs at import time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
SERVICES_FILE = "services.json"
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name, not a secret)
LINK_KEY_PURPOSE = b"signed links (export downloads, embeds) v1"


def env(name: str, default: str | None = None) -> str | None:
    """One environment variable, empty counting as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer environment variable, refused below `minimum`."""
    value = env(name)
    number = int(value) if value is not None else default
    if minimum is not None and number < minimum:
        raise RuntimeError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float) -> float:
    """A decimal environment variable."""
    value = env(name)
    return float(value) if value is not None else default


def env_flag(name: str) -> bool:
    """A yes/no environment variable: 1, true, yes or on (any case) is yes; unset or anything else no."""
    return (env(name) or "").strip().lower() in ("1", "true", "yes", "on")


def env_floats(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A comma-separated list of non-negative numbers (e.g. seconds), refused when empty or negative."""
    value = env(name)
    if value is None:
        return default
    numbers = tuple(float(part) for part in value.split(","))
    if not numbers or any(number < 0 for number in numbers):
        raise RuntimeError(f"{name} must be a comma-separated list of numbers of at least 0, not {value!r}")
    return numbers


def instance_path() -> Path:
    """The folder of this instance's state (embedded servers, exports, beat's schedule, secrets)."""
    return Path(env("INSTANCE_PATH", str(DEFAULT_INSTANCE)))


def connection_timeout_ms(analytics_ms: int) -> int:
    """DB_STATEMENT_TIMEOUT_MS: milliseconds, or "analytics" for `analytics_ms`."""
    if (env("DB_STATEMENT_TIMEOUT_MS") or "").strip().lower() == "analytics":
        return analytics_ms
    return env_int("DB_STATEMENT_TIMEOUT_MS", 0, minimum=0)


def from_environment() -> dict[str, Any]:
    """Every setting from the environment, each with its default; reads no file."""
    instance = instance_path()
    analytics_timeout_ms = env_int("ANALYTICS_STATEMENT_TIMEOUT_MS", 30_000)
    return {
        "INSTANCE_PATH": str(instance),
        # The operator's servers; when unset, load() takes the embedded ones `make run` started.
        "DATABASE_URL": env("DATABASE_URL"),
        "REDIS_URL": env("REDIS_URL"),
        "BROKER_URL": env("BROKER_URL"),
        # At least 32 bytes; when unset, load() generates one once into instance/.
        "JWT_SECRET_KEY": env("JWT_SECRET_KEY"),
        "JWT_ACCESS_TOKEN_MINUTES": env_int("JWT_ACCESS_TOKEN_MINUTES", 60, minimum=1),
        "JWT_REFRESH_TOKEN_DAYS": env_int("JWT_REFRESH_TOKEN_DAYS", 30, minimum=1),
        # A refresh token is used once; sent again within this many seconds of its use (a client's
        # concurrent or retried refresh) it is answered again with the same successor, after that its
        # whole login is revoked.
        "REFRESH_REUSE_GRACE_SECONDS": env_int("REFRESH_REUSE_GRACE_SECONDS", 10, minimum=0),
        "CACHE_TTL_SECONDS": env_int("CACHE_TTL_SECONDS", 3600),
        "REDIS_SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 0.5),
        # Per web process: copies of cached answers kept coherent by Redis (0 turns it off).
        "NEAR_CACHE_MAX_BYTES": env_int("NEAR_CACHE_MAX_BYTES", 64 * 1024 * 1024),
        "EXPORT_DIR": env("EXPORT_DIR", str(instance / "exports")),
        "EXPORT_RETENTION_DAYS": env_int("EXPORT_RETENTION_DAYS", 7),
        "EXPORT_LINK_TTL_SECONDS": env_int("EXPORT_LINK_TTL_SECONDS", 24 * 3600),
        "EXPORT_SYNC_MAX_ROWS": env_int("EXPORT_SYNC_MAX_ROWS", 10_000),
        # Export and embed links are signed (HMAC-SHA256) with this key (at least 32 bytes); when
        # unset, with one derived from JWT_SECRET_KEY for links alone (link_key, at app creation).
        "EXPORT_SIGNING_KEY": env("EXPORT_SIGNING_KEY"),
        "PUBLIC_BASE_URL": env("PUBLIC_BASE_URL"),
        # Where this machine's web process answers (`make run` sets it): the base of links sent
        # out of the platform (a report's webhook) when PUBLIC_BASE_URL is not set.
        "LOCAL_BASE_URL": env("LOCAL_BASE_URL"),
        "WS_PING_INTERVAL": env_float("WS_PING_INTERVAL", 25.0),
        # Open sockets one web process holds (each a greenlet, some 55 KiB; gunicorn.conf.py's
        # worker_connections leaves REST room above it).
        "WS_MAX_SOCKETS_PER_PROCESS": env_int("WS_MAX_SOCKETS_PER_PROCESS", 10_000, minimum=1),
        # Open sockets (dashboards) one organization may hold at once, across every web process.
        "WS_MAX_SOCKETS_PER_ORG": env_int("WS_MAX_SOCKETS_PER_ORG", 10_000, minimum=1),
        # subscribe and resume messages a socket may send: a burst, then so many a minute (more: an error).
        "WS_COSTLY_MESSAGES_BURST": env_int("WS_COSTLY_MESSAGES_BURST", 10, minimum=1),
        "WS_COSTLY_MESSAGES_PER_MINUTE": env_int("WS_COSTLY_MESSAGES_PER_MINUTE", 30, minimum=1),
        # How far back a resume reaches (older events are not sent again; an error says so).
        "WS_RESUME_MAX_SECONDS": env_int("WS_RESUME_MAX_SECONDS", 3600, minimum=1),
        "WS_ALLOWED_ORIGINS": [o for o in (env("WS_ALLOWED_ORIGINS", "") or "").split(",") if o],
        "AGGREGATION_ASYNC_THRESHOLD": env_int("AGGREGATION_ASYNC_THRESHOLD", 2_000_000),
        "ROLLUP_EXACT_PERCENTILE_MAX": env_int("ROLLUP_EXACT_PERCENTILE_MAX", 200_000),
        # Numbers (groups x buckets x statistics) an analytics answer may hold: about 4 MB of JSON.
        "ANALYTICS_MAX_CELLS": env_int("ANALYTICS_MAX_CELLS", 200_000, minimum=1_000),
        # Days an exact (raw events, no rollups) read may span; each 30 of them cost one more request.
        "ANALYTICS_EXACT_MAX_DAYS": env_int("ANALYTICS_EXACT_MAX_DAYS", 366, minimum=1),
        "ANALYTICS_STATEMENT_TIMEOUT_MS": analytics_timeout_ms,
        # The statement timeout every database connection of this process starts with, in ms (0:
        # the server's), or "analytics" for ANALYTICS_STATEMENT_TIMEOUT_MS: gunicorn.conf.py gives
        # the web that, so an analytics read sets nothing per transaction; workers, beat and the CLI
        # keep 0 (rollup builds and imports run long).
        "DB_STATEMENT_TIMEOUT_MS": connection_timeout_ms(analytics_timeout_ms),
        # Request bodies, refused (413) before they are parsed: sign-in and token routes, and every
        # other route but imports (IMPORT_MAX_BYTES).
        "AUTH_BODY_MAX_BYTES": env_int("AUTH_BODY_MAX_BYTES", 4 * 1024, minimum=1024),
        "BODY_MAX_BYTES": env_int("BODY_MAX_BYTES", 256 * 1024, minimum=4 * 1024),
        "JOB_MAX_ATTEMPTS": env_int("JOB_MAX_ATTEMPTS", 3),
        # A job still running after this long runs on at JOB_NICENESS, its database backends too where
        # the server is a process of this machine (JOB_NICENESS 0: never). See infra/priority.py.
        "JOB_DEMOTE_AFTER_SECONDS": env_float("JOB_DEMOTE_AFTER_SECONDS", 0.5),
        # An organization whose jobs ran this many seconds of the last minute has its next runs
        # demoted from their start (0: never); half a worker slot's worth by default.
        "JOB_DEMOTE_BUSY_SECONDS": env_float("JOB_DEMOTE_BUSY_SECONDS", 30.0),
        "JOB_NICENESS": min(env_int("JOB_NICENESS", 10, minimum=0), 19),
        # Worker seconds one organization's jobs may run over a minute before new jobs get 429 with
        # Retry-After (0: no budget): one worker slot's worth on average, whatever JOB_MAX_RUNNING_PER_ORG
        # lets it run at once. See jobs/worker_time.py.
        "JOB_WORKER_SECONDS_PER_MINUTE": max(0.0, env_float("JOB_WORKER_SECONDS_PER_MINUTE", 60.0)),
        # Seconds one organization's analytics answers may take to compute over a minute (cache misses
        # on the REST reads, the dashboard, embed links and WebSocket values) before new computations
        # get 429 with Retry-After (0: no budget). See analytics/read_time.py.
        "ANALYTICS_READ_SECONDS_PER_MINUTE": max(0.0, env_float("ANALYTICS_READ_SECONDS_PER_MINUTE", 60.0)),
        # The same for the values WebSockets are sent (subscribe, periodic updates, a metric_update's
        # fresh values): a budget of its own, smaller. A swarm of 40 sockets of one organization, each
        # subscribing with new filters, took another organization's small job from 27 ms to 2.3 s (p99)
        # within the 60 s above, 84 ms within 20.
        "WS_READ_SECONDS_PER_MINUTE": max(0.0, env_float("WS_READ_SECONDS_PER_MINUTE", 20.0)),
        # A job still queued this long whose message the broker no longer holds is sent again.
        "JOB_REQUEUE_AFTER_SECONDS": env_int("JOB_REQUEUE_AFTER_SECONDS", 60),
        # Jobs of one organization running at once; more wait (queued) so that others get worker slots.
        # Unset: half of each worker's slots, at least one (workers.signals sets it as the worker
        # starts), so the Procfile's worker of 2 slots always keeps one for other organizations.
        "JOB_MAX_RUNNING_PER_ORG": env_int("JOB_MAX_RUNNING_PER_ORG", 0, minimum=0) or None,
        # Finished jobs (with their params and results) are deleted this long after they finished.
        "JOB_RETENTION_DAYS": env_int("JOB_RETENTION_DAYS", 30, minimum=1),
        # Bytes of export files one organization may keep; a new export past it is 429 at submit.
        "EXPORT_QUOTA_BYTES": env_int("EXPORT_QUOTA_BYTES", 1024**3, minimum=1),
        "EXPORT_MAX_ACTIVE_PER_ORG": env_int("EXPORT_MAX_ACTIVE_PER_ORG", 3),
        # Jobs of each other kind one organization may have queued or running at once (429 past it).
        "JOB_MAX_ACTIVE_PER_ORG": {
            "aggregation": env_int("JOB_MAX_ACTIVE_AGGREGATIONS_PER_ORG", 4, minimum=1),
            "import": env_int("JOB_MAX_ACTIVE_IMPORTS_PER_ORG", 4, minimum=1),
            "snapshot": env_int("JOB_MAX_ACTIVE_SNAPSHOTS_PER_ORG", 4, minimum=1),
            "cache_refresh": env_int("JOB_MAX_ACTIVE_CACHE_REFRESHES_PER_ORG", 2, minimum=1),
        },
        # Failed sign-ins (and refreshes, per address) within a sliding window before 429 with Retry-After.
        "AUTH_THROTTLE_WINDOW_SECONDS": env_int("AUTH_THROTTLE_WINDOW_SECONDS", 300, minimum=1),
        "AUTH_MAX_FAILURES_PER_EMAIL": env_int("AUTH_MAX_FAILURES_PER_EMAIL", 5, minimum=1),
        "AUTH_MAX_FAILURES_PER_ADDRESS": env_int("AUTH_MAX_FAILURES_PER_ADDRESS", 50, minimum=1),
        "TOKEN_REVOCATION_CACHE_SECONDS": env_int("TOKEN_REVOCATION_CACHE_SECONDS", 10),
        # How long the first answer to a request with an Idempotency-Key is kept for its retries.
        "IDEMPOTENCY_KEY_HOURS": env_int("IDEMPOTENCY_KEY_HOURS", 24, minimum=1),
        "IMPORT_MAX_BYTES": env_int("IMPORT_MAX_BYTES", 5 * 1024 * 1024),
        "IMPORT_MAX_ROWS": env_int("IMPORT_MAX_ROWS", 10_000),
        "SNAPSHOT_GRACE_MINUTES": env_int("SNAPSHOT_GRACE_MINUTES", 10),
        # A caller refused more than this many times within a second (in one web process) has each
        # further refusal held this long before it is sent (api/plumbing/refusal_pace.py; 0 ms: never).
        "REFUSAL_PACE_FREE": env_int("REFUSAL_PACE_FREE", 10, minimum=0),
        "REFUSAL_PACE_MS": env_int("REFUSAL_PACE_MS", 25, minimum=0),
        "RATE_LIMITS_PER_MINUTE": {
            "analytics": env_int("RATE_LIMIT_ANALYTICS_PER_MINUTE", 60_000),
            "jobs": env_int("RATE_LIMIT_JOBS_PER_MINUTE", 1_200),
            "exports": env_int("RATE_LIMIT_EXPORTS_PER_MINUTE", 300),
            # Per download link's export, for downloads without a token: a link in the open can
            # use up its own budget, never its organization's.
            "downloads": env_int("RATE_LIMIT_DOWNLOADS_PER_MINUTE", 120),
        },
        # Celery (celeryconfig.py turns these into its own names). Soft < hard < visibility timeout,
        # checked when a worker starts.
        "TASK_SOFT_TIME_LIMIT": env_int("TASK_SOFT_TIME_LIMIT", 1800),
        "TASK_TIME_LIMIT": env_int("TASK_TIME_LIMIT", 1900),
        "BROKER_VISIBILITY_TIMEOUT": env_int("BROKER_VISIBILITY_TIMEOUT", 3600),
        # How often a worker looks for messages a dead worker left unacknowledged (Celery's default: 100 s).
        "BROKER_RESTORE_INTERVAL": env_int("BROKER_RESTORE_INTERVAL", 10),
        "CELERY_RESULT_EXPIRES": env_int("CELERY_RESULT_EXPIRES", 24 * 3600),
        "SNAPSHOT_SCHEDULE_SECONDS": env_int("SNAPSHOT_SCHEDULE_SECONDS", 60, minimum=1),
        "EXPORT_CLEANUP_SECONDS": env_int("EXPORT_CLEANUP_SECONDS", 3600, minimum=1),
        "CACHE_WARM_SECONDS": env_int("CACHE_WARM_SECONDS", 900, minimum=1),
        "ROLLUP_RECONCILE_SECONDS": env_int("ROLLUP_RECONCILE_SECONDS", 900, minimum=1),
        # Webhooks: a target that resolves to a private, loopback or link-local address is refused,
        # when saved and again at each delivery, unless this is set (`make run` sets it, and says so).
        "WEBHOOK_ALLOW_PRIVATE": env_flag("WEBHOOK_ALLOW_PRIVATE"),
        # Seconds before each retry of a failed delivery (one retry per number, the same body each time).
        "WEBHOOK_RETRY_DELAYS": env_floats("WEBHOOK_RETRY_DELAYS", (30.0, 120.0, 600.0, 3600.0, 21600.0)),
        # Deliveries that failed (all their retries spent) in a row before the webhook is disabled.
        "WEBHOOK_MAX_FAILURES": env_int("WEBHOOK_MAX_FAILURES", 10, minimum=1),
        # An attempt with no answer by then has failed.
        "WEBHOOK_TIMEOUT_SECONDS": env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
        "LOG_LEVEL": env("LOG_LEVEL", "INFO"),
        # The web port of the Procfile's `web` line under `make run`.
        "PORT": env_int("PORT", 8000),
        # Synthetic tickets `make run` seeds into the demo organization on its first run.
        "DEMO_TICKETS": env_int("DEMO_TICKETS", 100_000, minimum=1),
        # The days before today they are spread over (the rollups' build time grows with them).
        "DEMO_DAYS": env_int("DEMO_DAYS", 365, minimum=1),
    }


def embedded_services(instance: Path) -> dict[str, str]:
    """URLs of the embedded PostgreSQL and Redis that `make run` started, if any."""
    try:
        return json.loads((instance / SERVICES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def secret_file(path: Path) -> str:
    """The secret kept in `path`, made there once if missing; every process racing to make it reads
    the one that won.

    The new secret is written whole into a file of this call's own (O_EXCL), which is then linked
    into place (a link never replaces a file that exists): a reader sees no file or a complete one,
    never a half-written one, and the one we read back is the one every process uses.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the secret
        finally:
            draft.unlink(missing_ok=True)
    secret = path.read_text().strip()
    if len(secret.encode()) < 32:
        raise RuntimeError(f"{path} holds a secret shorter than 32 bytes; delete it to make a new one")
    return secret


def jwt_secret(instance: Path, configured: str | None) -> str:
    """The signing secret: the configured one, or one generated once and kept under instance/."""
    if configured is not None:
        if len(configured.encode()) < 32:
            raise RuntimeError("JWT_SECRET_KEY must be at least 32 bytes long")
        return configured
    return secret_file(instance / JWT_SECRET_FILE)


def link_key(jwt_key: str, configured: str | None) -> str:
    """The key of signed links (exports, embeds): the configured one, else one derived from the JWT
    secret for that purpose alone, so no link verifies as a token and no token as a link."""
    if configured is not None:
        if len(configured.encode()) < 32:
            raise RuntimeError("EXPORT_SIGNING_KEY must be at least 32 bytes long")
        return configured
    return hmac.new(jwt_key.encode(), LINK_KEY_PURPOSE, hashlib.sha256).hexdigest()


def normalize_database_url(url: str) -> str:
    """SQLAlchemy URL using psycopg 3 whatever scheme the operator wrote."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url(settings: dict[str, Any]) -> str | None:
    """The configured database, else the embedded one, as a SQLAlchemy URL."""
    url = settings["DATABASE_URL"] or embedded_services(Path(settings["INSTANCE_PATH"])).get("database_url")
    return normalize_database_url(url) if url else None


def load() -> dict[str, Any]:
    """The application settings: from_environment(), completed from instance/ where the operator left
    a URL or the secret unset."""
    settings = from_environment()
    instance = Path(settings["INSTANCE_PATH"])
    settings["SQLALCHEMY_DATABASE_URL"] = database_url(settings)
    del settings["DATABASE_URL"]
    settings["REDIS_URL"] = settings["REDIS_URL"] or embedded_services(instance).get("redis_url")
    settings["BROKER_URL"] = settings["BROKER_URL"] or settings["REDIS_URL"]
    settings["JWT_SECRET_KEY"] = jwt_secret(instance, settings["JWT_SECRET_KEY"])
    return settings
