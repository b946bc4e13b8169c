"""What follows a committed ticket change: cache invalidation and a live metric_update."""

from __future__ import annotations

import logging

import redis

from webapp import events
from webapp.analytics import cache
from webapp.analytics.metrics import metrics_changed_by
from webapp.redis_client import get_redis
from webapp.tickets import Change

log = logging.getLogger(__name__)


def after_ticket_change(org_id: int, change: Change, fields: tuple[str, ...] = ()) -> None:
    """Bump the generations the change touches, then tell live clients which metrics moved."""
    client = get_redis()
    event_types = [event.event_type for event in change.events]
    families = cache.families_for(event_types, fields)
    try:
        cache.bump(client, org_id, families)
    except redis.RedisError as exc:
        # Reads bypass the cache while Redis is away, so no stale answer can be served.
        log.warning("generation bump failed org=%s: %s", org_id, exc)
    metrics = metrics_changed_by(event_types, fields)
    if metrics:
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
