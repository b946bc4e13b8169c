"""Beat's rollup upkeep: rebuild hours writes marked stale, build business-hours rollups of new or
changed schedules and agent rollups of organizations without current ones, count settled days' SLA
verdicts ahead, and reconcile recent hours with raw events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import text

from webapp.analytics import agent_rollups, business_rollups, metric_days, rollups, sla_days, ticket_counts
from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.models import Organization

RECONCILE_HOURS = 3
RECENT_ORGS = text(
    "SELECT DISTINCT org_id FROM ticket_events WHERE occurred_at >= :start AND occurred_at < :end"
)


@shared_task(name="rollups.refresh_pending", acks_late=True, ignore_result=True)
def refresh_pending() -> dict[str, Any]:
    """Fold imports' deltas into the rollups, then rebuild every organization's closed hours that
    writes marked stale."""
    with session_scope() as session:
        org_ids = rollups.pending_orgs(session)
        folding = rollups.delta_orgs(session)
    # Imports' appended cells moved into the rows, so reads add fewer of them.
    for org_id in folding:
        with session_scope() as session:
            rollups.fold_deltas(session, org_id=org_id)
    refreshed = 0
    for org_id in org_ids:
        with session_scope() as session:
            if rollups.refresh(session, org_id=org_id, wait=False) is not None:
                refreshed += 1
    return {"organizations": refreshed, "folded": len(folding)}


@shared_task(name="rollups.build_business", acks_late=True, ignore_result=True)
def build_business() -> dict[str, Any]:
    """Build the business-hours rollups of every schedule whose rollups are missing or out of date."""
    with session_scope() as session:
        stale = business_rollups.stale_schedules(session)
    built = 0
    for org_id, schedule_id in stale:
        with session_scope() as session:
            if (
                rollups.build_business(session, org_id=org_id, schedule_id=schedule_id, wait=False)
                is not None
            ):
                built += 1
    return {"schedules": built}


@shared_task(name="rollups.build_agents", acks_late=True, ignore_result=True)
def build_agents() -> dict[str, Any]:
    """Rebuild the agent rollups of every organization whose rows are missing or were built for
    another zone or other SLA targets (the agents report reads raw events meanwhile)."""
    with session_scope() as session:
        stale = agent_rollups.stale_orgs(session)
    for org_id in stale:
        with session_scope() as session:
            org = session.get(Organization, org_id)
            if org is not None:
                agent_rollups.rebuild(session, org)
    return {"organizations": len(stale)}


@shared_task(name="rollups.count_sla_days", acks_late=True, ignore_result=True)
def count_sla_days() -> dict[str, Any]:
    """Count ahead the SLA verdicts of every organization's settled days that are due (missing,
    written to, past their valid_until, or counted under another policy)."""
    now = utcnow()
    with session_scope() as session:
        forgotten = sla_days.forget_orphans(session)
        org_ids = sla_days.due_orgs(session)
    counted = 0
    for org_id in org_ids:
        with session_scope() as session:
            counted += sla_days.count_days(session, org_id=org_id, now=now) or 0
    return {"organizations": len(org_ids), "days": counted, "orphan_marks": forgotten}


@shared_task(name="rollups.sum_metric_days", acks_late=True, ignore_result=True)
def sum_metric_days() -> dict[str, Any]:
    """Sum the hourly rollups of every organization's ended local days that are missing or marked
    since (long reads then merge days, not hours)."""
    now = utcnow()
    with session_scope() as session:
        forgotten = metric_days.forget_orphans(session)
        orgs = metric_days.orgs(session)
    summed = 0
    for org_id, tz_name in orgs:
        with session_scope() as session:
            summed += metric_days.sum_days(session, org_id=org_id, tz_name=tz_name, now=now) or 0
    return {"organizations": len(orgs), "days": summed, "orphan_marks": forgotten}


def _recent_orgs(start: datetime, end: datetime) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(RECENT_ORGS, {"start": start, "end": end}))


@shared_task(name="rollups.reconcile_recent", acks_late=True, ignore_result=True)
def reconcile_recent() -> dict[str, Any]:
    """Rebuild the last few closed hours of organizations with recent events, and log any drift;
    fold the ticket-count deltas their writes left."""
    end = rollups.floor_hour(utcnow())
    start = end - timedelta(hours=RECONCILE_HOURS)
    drifted = folded = 0
    for org_id in _recent_orgs(start, end):
        with session_scope() as session:
            stats = rollups.reconcile(session, org_id=org_id, start=start, end=end)
            drifted += stats.written + stats.removed
        with session_scope() as session:
            folded += ticket_counts.compact(session, org_id=org_id)
    return {"drifted_rows": drifted, "folded_hours": folded}
