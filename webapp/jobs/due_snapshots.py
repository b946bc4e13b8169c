"""Snapshots that are due: the latest closed day, week and month of each organization not yet stored,
and stored ones a later write of events made stale, asked for as snapshot jobs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.analytics.periods import due_periods
from webapp.analytics.snapshots import PLACEHOLDER_VERSION, is_fresh, job_params, stale_snapshots
from webapp.core.timeutil import TimeError, zone
from webapp.jobs import submission as jobs
from webapp.models import AnalyticsSnapshot, Organization

log = logging.getLogger(__name__)


@dataclass
class Scheduled:
    """What one scheduling pass did: jobs submitted, and periods found queued or stored already."""

    now: datetime
    submitted: list[str] = field(default_factory=list)
    already_queued: int = 0
    already_stored: int = 0
    # Jobs asked for stored snapshots that a later write made stale.
    recomputed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "submitted": self.submitted,
            "recomputed": self.recomputed,
            "already_queued": self.already_queued,
            "already_stored": self.already_stored,
        }


def is_stored(session: Session, org_id: int, snapshot_type: str, first_date: date) -> bool:
    """Whether the snapshot of this period is already in analytics_snapshots (a first compute's
    placeholder is not: its job may have failed)."""
    row = session.scalar(
        select(AnalyticsSnapshot.id).where(
            AnalyticsSnapshot.org_id == org_id,
            AnalyticsSnapshot.snapshot_type == snapshot_type,
            AnalyticsSnapshot.snapshot_date == first_date,
            AnalyticsSnapshot.definition_version != PLACEHOLDER_VERSION,
        )
    )
    return row is not None


def schedule_due(
    session: Session,
    client: redis.Redis,
    celery: jobs.TaskQueue,
    *,
    now: datetime,
    grace: timedelta,
    org_ids: Sequence[int] | None = None,
) -> Scheduled:
    """Ask for the latest closed periods of each organization (or of `org_ids`) not yet stored."""
    scheduled = Scheduled(now)
    query = select(Organization.id, Organization.timezone).order_by(Organization.id)
    if org_ids is not None:
        query = query.where(Organization.id.in_(org_ids))
    for org_id, tz_name in session.execute(query).all():
        try:
            periods = due_periods(zone(tz_name), now, grace=grace)
        except TimeError as exc:
            log.error("org=%s has an unusable time zone, no snapshots scheduled: %s", org_id, exc)
            continue
        # Stored rows never go away, so most periods are settled by one query without any lock.
        missing = [p for p in periods if not is_stored(session, org_id, p.snapshot_type, p.first_date)]
        scheduled.already_stored += len(periods) - len(missing)
        for period in missing:
            _submit(session, client, celery, org_id, period.snapshot_type, period.first_date, scheduled)
        for snapshot_type, first_date in stale_snapshots(session, org_id=org_id):
            _recompute(session, client, celery, org_id, snapshot_type, first_date, scheduled)
    return scheduled


def _recompute(
    session: Session,
    client: redis.Redis,
    celery: jobs.TaskQueue,
    org_id: int,
    snapshot_type: str,
    first_date: date,
    scheduled: Scheduled,
) -> None:
    """Ask for a stale snapshot again (a back-fill or an import reached its period): a queued identical
    job answers, a running one does not (it may have read before the write that made the row stale;
    its upsert would mark data without that write fresh), so at most one more runs after it."""
    job, created = jobs.submit_unless(
        session,
        client,
        celery,
        org_id=org_id,
        user_id=None,
        kind="snapshot",
        params=job_params(snapshot_type, first_date),
        done=partial(is_fresh, session, org_id, snapshot_type, first_date),
    )
    if job is not None and created:
        scheduled.recomputed.append(str(job.id))
        log.info(
            "job=%s org=%s kind=snapshot recomputing stale %s %s", job.id, org_id, snapshot_type, first_date
        )


def _submit(
    session: Session,
    client: redis.Redis,
    celery: jobs.TaskQueue,
    org_id: int,
    snapshot_type: str,
    first_date: date,
    scheduled: Scheduled,
) -> None:
    # Under submit's lock: an identical active job is reused, running too (a run that fires twice, or
    # a manual request), else a stored row means done; a job finishing between the two checks has
    # already committed its row, so the period is never computed twice.
    job, created = jobs.submit_unless(
        session,
        client,
        celery,
        org_id=org_id,
        user_id=None,
        kind="snapshot",
        params=job_params(snapshot_type, first_date),
        done=partial(is_stored, session, org_id, snapshot_type, first_date),
        reuse_running=True,
    )
    if job is None:
        scheduled.already_stored += 1
    elif not created:
        scheduled.already_queued += 1
    else:
        scheduled.submitted.append(str(job.id))
        log.info("job=%s org=%s kind=snapshot scheduled %s %s", job.id, org_id, snapshot_type, first_date)
