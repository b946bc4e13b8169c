"""Beat's report pass: due schedules run (an export job each), finished runs delivered as report.ready."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from webapp.core.timeutil import utcnow
from webapp.exports.room import ExportLimits
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.reports import runs
from webapp.webhooks import deliveries

log = logging.getLogger(__name__)


@shared_task(name="reports.tick", acks_late=True)
def tick(now: str | None = None, org_ids: list[int] | None = None) -> dict[str, Any]:
    """Run every due schedule once (missed runs collapse into one), then deliver finished runs.

    `now` (ISO 8601) fixes the clock for a replay; `org_ids` limits the pass to those organizations.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    celery, client = current_app.extensions["celery"], get_redis()
    limits = ExportLimits.from_settings(current_app.config)
    with session_scope() as session:
        due = runs.due(session, now=moment, org_ids=org_ids)
    started = []
    for schedule_id in due:
        try:
            with session_scope() as session:
                job = runs.run_due(session, client, celery, schedule_id, now=moment, limits=limits)
        except SQLAlchemyError:
            # Still due: tried again at the next pass; the schedules after it are not held up.
            log.exception("report schedule=%s: the run's database work failed", schedule_id)
            continue
        if job is not None:
            started.append(str(job.id))
    with session_scope() as session:
        base_url = current_app.config["PUBLIC_BASE_URL"] or current_app.config["LOCAL_BASE_URL"] or ""
        made = runs.finish_runs(session, now=moment, org_ids=org_ids, base_url=base_url)
    deliveries.enqueue(celery, made)
    return {"started": started, "delivered": [str(delivery_id) for delivery_id in made]}
