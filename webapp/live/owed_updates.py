"""metric_updates a write could not publish (Redis unreachable after its commit), owed and sent later.

A ticket written while Redis is away is stored (PostgreSQL is the source of truth) and its cache
generations are owed (analytics.generations); its metric_update would be lost, and a dashboard that
reconnects and resumes would never hear of the change. Such updates are merged per organization
(the events, metrics and families named, the tickets and schedules, how many changes) and published as one
metric_update with `catch_up: true` as soon as Redis answers again, by a thread of the process that
owed it; live pages redraw what it names, and a resume reads it like any other event.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from webapp.analytics import generations
from webapp.infra.pay_later import PayLater
from webapp.live import events

log = logging.getLogger(__name__)

# The tickets one catch-up names at most (the count of changes is always whole).
MAX_TICKET_IDS = 1000
_LISTS = ("events", "metrics", "families")


class OwedUpdates:
    """Each organization's merged metric_update not yet published; retried every `every` seconds.

    Kept in the process's memory: a process that ends before Redis is back (a recycled pool process,
    a restarted web worker) takes what it owed with it.
    """

    def __init__(self, every: float = 0.5) -> None:
        self._owed: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._payer = PayLater("owed-metric-updates", every, self._anything_owed, self.pay)

    def add(self, client: redis.Redis, org_id: int, data: dict[str, Any]) -> None:
        """Owe `data` (a metric_update's) for the organization, merged with what it owes already."""
        with self._lock:
            _merge(self._owed, org_id, _owed_form(data))
        self._payer.wake(client)

    def _anything_owed(self) -> bool:
        with self._lock:
            return bool(self._owed)

    def owed(self, org_id: int) -> dict[str, Any] | None:
        """What the organization is owed now (a copy), if anything."""
        with self._lock:
            owed = self._owed.get(org_id)
            return None if owed is None else {**owed}

    def pay(self, client: redis.Redis) -> bool:
        """Publish what is owed now (after the owed cache bumps, so that a page redrawing on it reads
        no answer cached before the changes); whether nothing is owed any more."""
        if not generations.owed_bumps.pay(client):
            return False
        with self._lock:
            owed, self._owed = self._owed, {}
        try:
            for org_id in list(owed):
                if not _published(client, org_id, owed[org_id]):
                    break  # Redis away again: the rest waits for the next round
                del owed[org_id]
        finally:
            with self._lock:
                for org_id, data in owed.items():  # merged back with what was owed meanwhile
                    _merge(self._owed, org_id, data)
        with self._lock:
            return not self._owed


def _owed_form(data: dict[str, Any]) -> dict[str, Any]:
    """One update as an owed one: what it names, one change, its ticket and schedule."""
    ticket, schedule = data.get("ticket_id"), data.get("schedule_id")
    return {
        "catch_up": True,
        "changes": data.get("changes", 1),
        "ticket_ids": [ticket] if ticket is not None else list(data.get("ticket_ids", ())),
        "schedule_ids": [schedule] if schedule is not None else list(data.get("schedule_ids", ())),
        **{key: list(data.get(key, ())) for key in _LISTS},
    }


def _merge(owed: dict[int, dict[str, Any]], org_id: int, data: dict[str, Any]) -> None:
    current = owed.get(org_id)
    if current is None:
        owed[org_id] = {**data, "ticket_ids": sorted(data["ticket_ids"])[:MAX_TICKET_IDS]}
        return
    current["changes"] += data["changes"]
    for key in (*_LISTS, "schedule_ids"):
        current[key] = sorted({*current[key], *data[key]})
    current["ticket_ids"] = sorted({*current["ticket_ids"], *data["ticket_ids"]})[:MAX_TICKET_IDS]


def _published(client: redis.Redis, org_id: int, data: dict[str, Any]) -> bool:
    if events.publish(client, org_id, "metric_update", data) is None:
        return False
    log.info("owed metric_update published org=%s changes=%s", org_id, data["changes"])
    return True


owed_updates = OwedUpdates()


def publish_or_owe(client: redis.Redis, org_id: int, data: dict[str, Any]) -> str | None:
    """Publish a metric_update; when Redis cannot take it, owe it (published once Redis answers)."""
    event_id = events.publish(client, org_id, "metric_update", data)
    if event_id is None:
        owed_updates.add(client, org_id, data)
    return event_id
