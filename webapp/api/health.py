"""Liveness of the platform's parts: database, Redis, broker, workers and beat."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from webapp.api.plumbing.spec import document
from webapp.api.schemas.common import Health
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import QUEUES
from webapp.infra import heartbeat
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.security.admission import is_admin

bp = Blueprint("health", __name__)

BEAT_STALE_SECONDS = 90


def _recent(moment: str | None, seconds: float) -> bool:
    if moment is None:
        return False
    try:
        return (utcnow() - datetime.fromisoformat(moment)).total_seconds() <= seconds
    except ValueError:
        return False


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = check() or {}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **extra}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> dict[str, Any]:
    session = get_session()
    state = _timed(lambda: session.execute(text("SELECT 1")).scalar_one() and None)
    session.rollback()
    return state


def _broker(redis_ok: bool) -> dict[str, Any]:
    """The broker's state: the Redis answer when it is the same server, else a connection of its own."""
    config = current_app.config

    def check() -> dict[str, Any]:
        if config["BROKER_URL"] == config["REDIS_URL"]:
            if not redis_ok:
                raise ConnectionError("broker is the Redis server, which is unreachable")
            return {"url_scheme": "redis"}
        with current_app.extensions["celery"].connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return {}

    return _timed(check)


def _workers_and_beat(client: redis.Redis, redis_ok: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Workers seen and beat's last run, from their heartbeats in Redis."""
    workers: dict[str, Any] = {"seen": []}
    beat: dict[str, Any] = {"last_run": None}
    if redis_ok:
        try:
            workers = {"seen": heartbeat.workers_seen(client)}
            beat = {"last_run": heartbeat.beat_last_run(client)}
        except Exception as exc:
            workers = {"seen": [], "error": str(exc)}
    workers["count"] = len(workers["seen"])
    # Jobs wait in a queue no worker takes (the jobs' worker down while the background one runs, say);
    # schedules stop while beat is silent (its loop beats every 10 s).
    served = {queue for worker in workers["seen"] for queue in worker.get("queues", ())}
    # A worker that named no queues (an older one, mid-deploy) may take any: nothing is called unserved.
    unknown = any(not worker.get("queues") for worker in workers["seen"])
    workers["unserved_queues"] = [] if unknown else [queue for queue in QUEUES if queue not in served]
    workers["ok"] = workers["count"] > 0 and not workers["unserved_queues"]
    beat["ok"] = _recent(beat["last_run"], BEAT_STALE_SECONDS)
    return workers, beat


@bp.get("/health")
@document(
    "ok or degraded, and whether each part (database, Redis, broker, workers, beat) is ok (workers: "
    "every queue taken by a worker seen within a minute); with an admin's bearer token also each "
    "part's details (latency, workers seen and their queues, queues no worker takes, beat's last "
    "run, errors)",
    tag="operations",
    responses={200: Health},
    errors=(),
    auth=False,
)
def health() -> Response:
    """`degraded` while any part fails, and each part's `ok` (the contract's parts, for any client);
    the details (host names, latencies, errors) only for an admin."""
    client = get_redis()
    parts = {"database": _database(), "redis": _timed(lambda: client.ping() and None)}
    parts["broker"] = _broker(parts["redis"]["ok"])
    parts["workers"], parts["beat"] = _workers_and_beat(client, parts["redis"]["ok"])
    healthy = all(part["ok"] for part in parts.values())
    status = {"status": "ok" if healthy else "degraded"}
    if is_admin():
        return jsonify({**status, **parts})
    return jsonify({**status, **{name: {"ok": part["ok"]} for name, part in parts.items()}})
