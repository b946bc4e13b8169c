"""What follows a committed ticket change (rollups, cache invalidation and a live metric_update), or a
committed change of the clocks tickets are measured on."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from webapp.analytics import generations, rollups
from webapp.analytics.metrics import METRICS, metrics_changed_by
from webapp.live import owed_updates
from webapp.tickets.writes import Change

log = logging.getLogger(__name__)

# Hours one request may rebuild after its write; bigger backlogs (a bulk load) are the periodic
# refresh's work. A typical change marks one hour.
REFRESH_MAX_HOURS = 48


def refresh_rollups(session: Session, org_id: int, *, max_hours: int | None = REFRESH_MAX_HOURS) -> None:
    """Rebuild the closed rollup hours the organization's writes marked, without waiting for a lock.

    Best effort: the marks are committed with the write, so until a refresh succeeds reads take
    those hours from raw events and stay exact; a failure here only costs read speed (beat's
    periodic refresh tries again). A refresh that holds the lock is rebuilding those hours already.
    """
    try:
        rollups.refresh(session, org_id=org_id, max_hours=max_hours, wait=False)
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("rollup refresh failed org=%s: %s", org_id, exc)


def announce(
    client: redis.Redis,
    org_id: int,
    event_types: Iterable[str],
    fields: Iterable[str],
    about: dict[str, Any],
    *,
    bump: bool = True,
) -> None:
    """Bump the cache generations committed events touch and tell live clients which metrics moved.

    `about` says what wrote them (a ticket id, an import job); one metric_update covers them all.
    `bump=False`: the generations were bumped as each part was committed (invalidate), and live
    clients are told once for all the parts.
    """
    types, given = list(event_types), tuple(fields)
    families = invalidate(client, org_id, types, given) if bump else generations.families_for(types, given)
    metrics = metrics_changed_by(types, given)
    # A change that moves no metric may still move a distribution or the backlog (a status change):
    # live pages redraw what the families name.
    if metrics or families:
        data = {**about, "events": types, "metrics": sorted(metrics), "families": sorted(families)}
        owed_updates.publish_or_owe(client, org_id, data)


def invalidate(
    client: redis.Redis, org_id: int, event_types: Iterable[str], fields: Iterable[str] = ()
) -> set[str]:
    """Bump the cache generations committed events touch (no live message); the families bumped."""
    families = generations.families_for(list(event_types), tuple(fields))
    _bump(client, org_id, families)
    return families


def _bump(client: redis.Redis, org_id: int, families: set[str]) -> None:
    try:
        generations.bump(client, org_id, families)
    except redis.RedisError as exc:
        # Reads bypass the cache while Redis is away (bump() owes it and retries): no stale answer.
        log.warning("generation bump failed org=%s %s: %s", org_id, sorted(families), exc)


def clocks_changed(
    client: redis.Redis, org_id: int, families: set[str], about: dict[str, Any], *, durations: bool
) -> None:
    """A schedule or the SLA policy changed: bump the answers counted on the organization's clocks
    (`families`) and tell live clients. `durations` (a schedule was created, changed or deleted):
    every duration a business clock counts is named, to be read again (a subscription on a schedule
    just deleted ends there, saying so, not at its next periodic update); an SLA policy names none,
    its pages redraw from the families."""
    _bump(client, org_id, families)
    metrics = sorted(m.name for m in METRICS.values() if m.clocked) if durations else []
    owed_updates.publish_or_owe(
        client, org_id, {**about, "events": [], "metrics": metrics, "families": sorted(families)}
    )


def after_ticket_change(
    session: Session, client: redis.Redis, org_id: int, change: Change, fields: Iterable[str] = ()
) -> None:
    """Refresh rollups, bump the generations the change touches, tell live clients which metrics moved."""
    # Read before the refresh: a rollback there would expire them, and reloading needs the database.
    event_types = change.event_types
    about = {"ticket_id": change.ticket.id}
    refresh_rollups(session, org_id)
    announce(client, org_id, event_types, fields, about)
