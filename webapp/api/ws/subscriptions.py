"""A socket's subscription: its metrics' values sent at once, then every interval, and fresh values
added to each metric_update that moves one of them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from webapp.analytics.clock import CALENDAR, Clock, resolve
from webapp.analytics.window import QueryError
from webapp.api.ws import messages
from webapp.api.ws.messages import Filters, envelope, send_error
from webapp.infra.db import close_quietly
from webapp.live.connection import Connection, Event
from webapp.live.subscriptions import cached_values

log = logging.getLogger(__name__)


@dataclass
class Subscription:
    """What a socket subscribed to, and when its next periodic update is due (time.time())."""

    metrics: set[str] = field(default_factory=set)
    filters: Filters = field(default_factory=dict)
    interval: float = 30.0
    next_due: float = 0.0
    clock: Clock = CALENDAR


@dataclass(frozen=True)
class Stores:
    """Where a socket's values come from: Redis (cache and streams) and a session per computation,
    so an open socket holds no database connection between them."""

    client: redis.Redis
    sessions: sessionmaker[Session]

    def values(
        self, org_id: int, metrics: list[str], filters: Filters, clock: Clock = CALENDAR
    ) -> dict[str, Any]:
        """Current values of `metrics` (durations on `clock`), through the cache."""
        session = self.sessions()
        try:
            return cached_values(
                session, self.client, org_id=org_id, metrics=metrics, filters=filters, clock=clock
            )
        finally:
            close_quietly(session)

    def clock(self, org_id: int, name: str, schedule_id: int | None) -> Clock:
        """The clock a subscribe message asks for; MessageError names what is wrong with it."""
        if name == "calendar" and schedule_id is None:
            return CALENDAR
        session = self.sessions()
        try:
            return resolve(session, org_id, name, schedule_id)
        except QueryError as exc:
            raise messages.MessageError(str(exc)) from exc
        finally:
            close_quietly(session)


def _send_values(conn: Connection, sub: Subscription, stores: Stores, kind: str) -> None:
    data = stores.values(conn.org_id, sorted(sub.metrics), sub.filters, sub.clock)
    conn.send(
        envelope(conn, kind, {**data, "interval": sub.interval, "filters": sub.filters, **sub.clock.echo()})
    )


def subscribe(conn: Connection, sub: Subscription, stores: Stores, message: dict[str, Any]) -> None:
    """Add to the subscription and send its values; one that fails leaves the subscription as it was."""
    metrics, filters, interval = messages.subscription(message)
    clock = sub.clock
    if "clock" in message or "schedule_id" in message:
        clock = stores.clock(conn.org_id, *messages.subscription_clock(message))
    wanted = replace(
        sub,
        metrics=sub.metrics | metrics,
        filters=filters if "filters" in message else sub.filters,
        interval=interval,
        clock=clock,
    )
    _send_values(conn, wanted, stores, "subscription_data")
    sub.metrics, sub.filters, sub.interval = wanted.metrics, wanted.filters, wanted.interval
    sub.clock = wanted.clock
    sub.next_due = time.time() + interval


def unsubscribe(conn: Connection, sub: Subscription, message: dict[str, Any]) -> None:
    """Drop the named metrics and answer with those left."""
    sub.metrics -= messages.unsubscribed_metrics(message)
    conn.send(envelope(conn, "unsubscribed", {"metrics": sorted(sub.metrics)}))


def send_periodic(conn: Connection, sub: Subscription, stores: Stores) -> None:
    """The periodic update, when due; one that fails is reported, and the next is tried as planned."""
    if not sub.metrics or time.time() < sub.next_due:
        return
    sub.next_due = time.time() + sub.interval
    try:
        _send_values(conn, sub, stores, "periodic_update")
    except Exception:
        log.exception("periodic update failed org=%s", conn.org_id)
        send_error(conn, f"the periodic update failed; the next one is due in {sub.interval:g} s")


def needs_values(sub: Subscription, event: Event) -> bool:
    """Whether this socket sends `event` with values added (with_fresh_values), not as relayed."""
    return bool(sub.metrics) and event["type"] == "metric_update" and _changed(sub, event)


def _changed(sub: Subscription, event: Event) -> list[str]:
    return sorted(sub.metrics & set(event["data"].get("metrics", [])))


def with_fresh_values(conn: Connection, sub: Subscription, stores: Stores, event: Event) -> Event:
    """A relayed event as this socket sends it: a metric_update gets fresh values of the changed
    metrics it subscribed to. Unchanged, the event goes out as the JSON the relay made once."""
    if event["type"] != "metric_update":
        return event
    wanted = _changed(sub, event)
    if not wanted:
        return event
    try:
        values = stores.values(conn.org_id, wanted, sub.filters, sub.clock)["metrics"]
    except Exception:
        log.exception("fresh values failed org=%s", conn.org_id)
        return event
    return {**event, "data": {**event["data"], "values": values}}
