"""Beat's SLA sweep: clocks for marked tickets, and an sla_breached event for every target run past."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from celery import shared_task

from webapp.clocks import tracking
from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.live import events
from webapp.tickets import effects

# Beat sends this every 15 s; a sweep stops taking new batches after this long (the next goes on).
BUDGET_SECONDS = 10.0


@shared_task(name="sla.record_breaches", acks_late=True)
def record_breaches(org_ids: list[int] | None = None) -> dict[str, Any]:
    """Record due breaches first, then work off marked tickets; push fresh breaches as sla_breach."""
    deadline = time.monotonic() + BUDGET_SECONDS
    totals = {"worked": 0, "recorded": 0, "pushed": 0}
    late_pushed: Counter[int] = Counter()  # per organization, for the whole sweep (LATE_PUSHES)
    recorded: Counter[int] = Counter()  # per organization, told to live pages once at the end
    try:
        for step in (tracking.sweep_due, tracking.sweep_pending):
            while time.monotonic() < deadline:
                now = utcnow()
                with session_scope() as session:
                    batch = step(session, now=now, org_ids=org_ids)
                for breach in batch.to_push(now, late_pushed):
                    events.publish(get_redis(), breach.org_id, "sla_breach", breach.data())
                    totals["pushed"] += 1
                # Cached SLA answers are stale from the breach on: invalidated as each batch commits.
                for org_id, count in Counter(r.org_id for r in batch.recorded).items():
                    effects.invalidate(get_redis(), org_id, ["sla_breached"])
                    recorded[org_id] += count
                totals["worked"] += len(batch.worked_ids)
                totals["recorded"] += len(batch.recorded)
                if batch.claimed < tracking.BATCH:
                    break
    finally:
        # Live pages told once a sweep, however many batches it took (an import of old open tickets
        # records thousands at once), and of what was committed when a later batch failed: one
        # metric_update an organization counting them all.
        for org_id, count in recorded.items():
            effects.announce(get_redis(), org_id, ["sla_breached"], (), {"sla_breaches": count}, bump=False)
    return totals
