"""What follows a committed ticket change: rollups, cache invalidation and a live metric_update."""

from __future__ import annotations

import logging

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import object_session

from webapp.analytics import cache, rollups
from webapp.analytics.metrics import metrics_changed_by
from webapp.infra.redis_client import get_redis
from webapp.live import events
from webapp.tickets.writes import Change

log = logging.getLogger(__name__)

# Hours one request may rebuild after its write; bigger backlogs (a bulk load) are the periodic
# refresh's work. A typical change marks one hour.
REFRESH_MAX_HOURS = 48


def refresh_rollups(org_id: int, change: Change) -> None:
    """Rebuild the closed rollup hours the organization's writes marked, without waiting for a lock.

    Best effort: the marks are committed with the write, so until a refresh succeeds reads take
    those hours from raw events and stay exact; a failure here only costs read speed.
    """
    session = object_session(change.ticket)
    if session is None:
        return
    try:
        rollups.refresh(session, org_id=org_id, max_hours=REFRESH_MAX_HOURS, wait=False)
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("rollup refresh failed org=%s: %s", org_id, exc)


def after_ticket_change(org_id: int, change: Change, fields: tuple[str, ...] = ()) -> None:
    """Refresh rollups, bump the generations the change touches, tell live clients which metrics moved."""
    refresh_rollups(org_id, change)
    client = get_redis()
    event_types = [event.event_type for event in change.events]
    families = cache.families_for(event_types, fields)
    try:
        cache.bump(client, org_id, families)
    except redis.RedisError as exc:
        # Reads bypass the cache while Redis is away, so no stale answer can be served.
        log.warning("generation bump failed org=%s: %s", org_id, exc)
    metrics = metrics_changed_by(event_types, fields)
    # A change that moves no metric may still move a distribution or the backlog (a status change):
    # live pages redraw what the families name.
    if metrics or families:
        events.publish(
            client,
            org_id,
            "metric_update",
            {
                "ticket_id": change.ticket.id,
                "events": event_types,
                "metrics": sorted(metrics),
                "families": sorted(families),
            },
        )
