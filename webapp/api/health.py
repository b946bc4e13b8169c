"""Liveness of the platform's parts: database, Redis, broker, workers and beat."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from webapp.api.plumbing.spec import document
from webapp.api.schemas.common import Health
from webapp.core.timeutil import utcnow
from webapp.infra import heartbeat
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis

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


@bp.get("/health")
@document(
    "Database, Redis, broker, workers seen and beat's last run",
    tag="operations",
    responses={200: Health},
    errors=(),
    auth=False,
)
def health() -> Response:
    session = get_session()
    database = _timed(lambda: session.execute(text("SELECT 1")).scalar_one() and None)
    session.rollback()
    client = get_redis()
    redis_state = _timed(lambda: client.ping() and None)
    same_server = current_app.config["BROKER_URL"] == current_app.config["REDIS_URL"]

    def broker_check() -> dict[str, Any]:
        if same_server:
            if not redis_state["ok"]:
                raise ConnectionError("broker is the Redis server, which is unreachable")
            return {"url_scheme": "redis"}
        with current_app.extensions["celery"].connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return {}

    broker = _timed(broker_check)
    workers: dict[str, Any] = {"seen": []}
    beat: dict[str, Any] = {"last_run": None}
    if redis_state["ok"]:
        try:
            workers = {"seen": heartbeat.workers_seen(client)}
            beat = {"last_run": heartbeat.beat_last_run(client)}
        except Exception as exc:
            workers = {"seen": [], "error": str(exc)}
    workers["count"] = len(workers["seen"])
    # Jobs wait while no worker is seen; schedules stop while beat is silent (it beats every 30 s).
    workers["ok"] = workers["count"] > 0
    beat["ok"] = _recent(beat["last_run"], BEAT_STALE_SECONDS)
    healthy = database["ok"] and redis_state["ok"] and broker["ok"] and workers["ok"] and beat["ok"]
    return jsonify(
        {
            "status": "ok" if healthy else "degraded",
            "database": database,
            "redis": redis_state,
            "broker": broker,
            "workers": workers,
            "beat": beat,
        }
    )
