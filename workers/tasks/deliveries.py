"""Webhook deliveries: one attempt per task (claimed, POSTed, recorded), and beat's sweep of those due."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import shared_task
from flask import current_app

from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.webhooks import deliveries

log = logging.getLogger(__name__)


@shared_task(name=deliveries.SEND_TASK, acks_late=True)
def send(delivery_id: str) -> dict[str, Any]:
    """Make one attempt of the delivery if it is due and no other worker is making one."""
    settings = deliveries.Settings.from_config(current_app.config)
    with session_scope() as session:
        claimed = deliveries.claim(session, uuid.UUID(delivery_id), now=utcnow())
        if claimed is None:
            return {"attempted": False}
        answer = deliveries.attempt(claimed, settings, now=utcnow())
        outcome = deliveries.record(session, claimed, answer, settings, now=utcnow())
    what = answer.status or answer.error
    log.info(
        "delivery=%s org=%s attempt %s: %s -> %s",
        delivery_id,
        claimed.org_id,
        claimed.number,
        what,
        outcome.state,
    )
    if outcome.retry_in is not None and outcome.retry_in <= deliveries.COUNTDOWN_MAX_SECONDS:
        deliveries.enqueue(current_app.extensions["celery"], [claimed.id], countdown=outcome.retry_in)
    return {"attempted": True, "status": answer.status, "state": outcome.state, "disabled": outcome.disabled}


@shared_task(name="deliveries.send_due", acks_late=True)
def send_due() -> dict[str, Any]:
    """Send again the deliveries due and not sent: lost messages, dead workers, long retry delays."""
    with session_scope() as session:
        due = deliveries.due(session, now=utcnow())
    deliveries.enqueue(current_app.extensions["celery"], due)
    return {"sent": len(due)}
