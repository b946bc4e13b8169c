"""Beat's alert pass: every enabled rule evaluated on each bucket closed since its last pass."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import shared_task
from flask import current_app

from webapp.alerts import live
from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.webhooks import deliveries

log = logging.getLogger(__name__)

# Beat sends this every 15 s; a pass takes no new rule after this long (the next pass goes on).
BUDGET_SECONDS = 10.0


@shared_task(name="alerts.evaluate_due", acks_late=True)
def evaluate_due(now: str | None = None, org_ids: list[int] | None = None) -> dict[str, Any]:
    """Evaluate each due rule in a transaction of its own, then send what it recorded to its channels.

    `now` (ISO 8601) fixes the clock for a replay; `org_ids` limits the pass to those organizations.
    """
    moment = datetime.fromisoformat(now) if now else utcnow()
    deadline = time.monotonic() + BUDGET_SECONDS
    totals = {"rules": 0, "buckets": 0, "transitions": 0, "deliveries": 0}
    with session_scope() as session:
        rule_ids = live.rules_due(session, now=moment, org_ids=org_ids)
    for rule_id in rule_ids:
        if time.monotonic() > deadline:
            break
        try:
            with session_scope() as session:
                recorded = live.evaluate_rule(session, rule_id, now=moment)
        except Exception:
            # One rule that cannot be evaluated (its metric left the registry, say) must not stop the rest.
            log.exception("alert=%s could not be evaluated", rule_id)
            continue
        if recorded is None:
            continue
        deliveries.enqueue(current_app.extensions["celery"], recorded.delivery_ids)
        live.announce(get_redis(), recorded)
        totals["rules"] += 1
        totals["buckets"] += recorded.buckets
        totals["transitions"] += len(recorded.transitions)
        totals["deliveries"] += len(recorded.delivery_ids)
    return totals
