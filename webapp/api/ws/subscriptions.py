"""A socket's subscriptions: each subscribe message's metrics with its own filters, interval and clock,
their values sent at once, then every interval, and fresh values added to each metric_update that
moves one of them.

A subscribe message sets the filters (none when it names none), interval and clock of the metrics it
names, which leave any earlier subscription of the socket; the other metrics keep theirs. Messages
with the same filters and clock share one group (the latest interval)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from webapp.analytics import read_time
from webapp.analytics.clock import CALENDAR, Clock, forget, resolve, still_exists
from webapp.analytics.read_time import ReadTimeSpent
from webapp.analytics.window import QueryError
from webapp.api.ws import messages
from webapp.api.ws.messages import Filters, envelope, send_error
from webapp.infra.db import close_quietly
from webapp.live.connection import Connection, Event
from webapp.live.subscriptions import cached_values

log = logging.getLogger(__name__)


@dataclass
class Group:
    """Metrics subscribed with the same filters and clock, and when their next periodic update is due
    (time.time())."""

    metrics: set[str] = field(default_factory=set)
    filters: Filters = field(default_factory=dict)
    interval: float = 30.0
    next_due: float = 0.0
    clock: Clock = CALENDAR

    def key(self) -> str:
        return json.dumps([self.filters, self.clock.params()], sort_keys=True)


@dataclass
class Subscription:
    """What a socket subscribed to: its groups, each metric in one."""

    groups: list[Group] = field(default_factory=list)

    @property
    def metrics(self) -> set[str]:
        return set().union(*(g.metrics for g in self.groups))

    @property
    def next_due(self) -> float:
        """When the first group's periodic update is due (inf with none)."""
        return min((g.next_due for g in self.groups), default=float("inf"))


class ScheduleGone(messages.MessageError):
    """A subscription's business-hours schedule was deleted: its values can no longer be counted."""

    def __init__(self, schedule_id: int | None) -> None:
        super().__init__(f"schedule {schedule_id} was deleted")
        self.schedule_id = schedule_id


# How long a socket waits for its organization's turn to compute values in this process.
TURN_WAIT_SECONDS = 10.0


class Turns:
    """One socket computation of an organization at a time in this process: its sockets take turns.

    Forty sockets of one organization, each subscribing with filters no cache holds, would otherwise
    all be computing at once; under gevent each is a greenlet that runs between its queries, and every
    other greenlet of the process (the relay, other organizations' sockets and requests) waits behind
    all of them at every turn of the loop (another organization's job_update waited 1.3 s at p99).
    Waiting for a turn holds no database connection (the session opens after it), and a socket that
    waits past TURN_WAIT_SECONDS is refused, as when the organization's read time is spent.
    """

    def __init__(self) -> None:
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, org_id: int) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(org_id)
            if lock is None:
                lock = self._locks[org_id] = threading.Lock()
            return lock


TURNS = Turns()


@dataclass(frozen=True)
class Stores:
    """Where a socket's values come from: Redis (cache and streams) and a session per computation,
    so an open socket holds no database connection between them."""

    client: redis.Redis
    sessions: sessionmaker[Session]
    # The organization's read time its sockets' computations must fit in (analytics.read_time).
    read_budget: read_time.Budget | None = None

    def values(
        self, org_id: int, metrics: list[str], filters: Filters, clock: Clock = CALENDAR
    ) -> dict[str, Any]:
        """Current values of `metrics` (durations on `clock`), through the cache, in the organization's
        turn (Turns); MessageError when they would have to be computed and the organization's read
        time is spent, or its turn did not come."""
        turn = TURNS.of(org_id)
        if not turn.acquire(timeout=TURN_WAIT_SECONDS):
            raise messages.MessageError(
                f"the organization's sockets are computing values; none came free in {TURN_WAIT_SECONDS:g} s"
            )
        try:
            return self._values(org_id, metrics, filters, clock)
        finally:
            turn.release()

    def _values(self, org_id: int, metrics: list[str], filters: Filters, clock: Clock) -> dict[str, Any]:
        session = self.sessions()
        try:
            if clock.business and not still_exists(session, clock):
                raise ScheduleGone(clock.schedule_id)
            return cached_values(
                session,
                self.client,
                org_id=org_id,
                metrics=metrics,
                filters=filters,
                clock=clock,
                budget=self.read_budget,
            )
        except ReadTimeSpent as exc:
            raise messages.MessageError(str(exc)) from exc
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


def _send_values(conn: Connection, group: Group, stores: Stores, kind: str) -> None:
    data = stores.values(conn.org_id, sorted(group.metrics), group.filters, group.clock)
    conn.send(
        envelope(
            conn, kind, {**data, "interval": group.interval, "filters": group.filters, **group.clock.echo()}
        )
    )


def subscribe(conn: Connection, sub: Subscription, stores: Stores, message: dict[str, Any]) -> None:
    """Subscribe the named metrics with the message's filters, interval and clock, and send the values
    of their group; one that fails leaves the subscriptions as they were."""
    metrics, filters, interval = messages.subscription(message)
    clock = CALENDAR
    if "clock" in message or "schedule_id" in message:
        clock = stores.clock(conn.org_id, *messages.subscription_clock(message))
    wanted = Group(set(metrics), filters, interval, clock=clock)
    same = next((g for g in sub.groups if g.key() == wanted.key()), None)
    if same is not None:
        wanted.metrics |= same.metrics
    _send_values(conn, wanted, stores, "subscription_data")
    wanted.next_due = time.time() + interval
    others = [g for g in sub.groups if g is not same]
    for group in others:
        group.metrics -= metrics
    sub.groups = [g for g in others if g.metrics] + [wanted]


def unsubscribe(conn: Connection, sub: Subscription, message: dict[str, Any]) -> None:
    """Drop the named metrics and answer with those left."""
    dropped = messages.unsubscribed_metrics(message)
    for group in sub.groups:
        group.metrics -= dropped
    sub.groups = [g for g in sub.groups if g.metrics]
    conn.send(envelope(conn, "unsubscribed", {"metrics": sorted(sub.metrics)}))


def send_periodic(conn: Connection, sub: Subscription, stores: Stores) -> None:
    """Each group's periodic update, when due; one that fails is reported, and the next is tried as
    planned."""
    now = time.time()
    for group in list(sub.groups):
        if now < group.next_due:
            continue
        group.next_due = now + group.interval
        try:
            _send_values(conn, group, stores, "periodic_update")
        except ScheduleGone as exc:
            _end_group(conn, sub, group, exc)
        except messages.MessageError as exc:  # the organization's read time is spent
            send_error(conn, f"{exc}; the next periodic update is due in {group.interval:g} s")
        except Exception:
            log.exception("periodic update failed org=%s", conn.org_id)
            send_error(conn, f"the periodic update failed; the next one is due in {group.interval:g} s")


def _end_group(conn: Connection, sub: Subscription, group: Group, gone: ScheduleGone) -> None:
    """Drop a subscription whose schedule was deleted, and say so (its periodic updates would count
    0 business hours from then on)."""
    if group in sub.groups:
        sub.groups.remove(group)
        send_error(
            conn,
            f"{gone}: the subscription to {', '.join(sorted(group.metrics))} on it ended; subscribe "
            "again with another clock or schedule_id",
        )


def needs_values(sub: Subscription, event: Event) -> bool:
    """Whether this socket sends `event` with values added (with_fresh_values), not as relayed."""
    if not sub.groups or event["type"] != "metric_update":
        return False
    return any(_wanted(group, event) for group in sub.groups)


def _wanted(group: Group, event: Event) -> list[str]:
    """The group's metrics `event` asks to read again: those it names, and every one of a group on the
    schedule it names (changed or deleted: a business-clock ticket_count ends with the rest)."""
    data = event["data"]
    if group.clock.business and group.clock.schedule_id in _schedules_named(data):
        return sorted(group.metrics)
    return sorted(group.metrics & set(data.get("metrics", [])))


class _Forgotten:
    """The schedules a process has dropped its copy of, once per metric_update naming one (not once
    per socket: the first read after it looks at the row and copies it again)."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._events: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def after(self, event: Event) -> None:
        schedule_ids, event_id = _schedules_named(event["data"]), event.get("id")
        if not schedule_ids or event_id is None:
            return
        with self._lock:
            if event_id in self._events:
                return
            self._events[event_id] = None
            while len(self._events) > self.keep:
                self._events.popitem(last=False)
        for schedule_id in schedule_ids:
            forget(schedule_id)


def _schedules_named(data: dict[str, Any]) -> set[int]:
    """The schedules a metric_update says changed: its `schedule_id`, or a catch-up's `schedule_ids`."""
    named = set(data.get("schedule_ids") or ())
    if data.get("schedule_id") is not None:
        named.add(data["schedule_id"])
    return named


FORGOTTEN = _Forgotten()


class EventValues:
    """The fresh values each metric_update carries, read once per event and subscription in this
    process: every socket subscribed alike gets the same values for the same event, from one read,
    not one read (a cache lookup at best) per socket. A thousand sockets subscribed to one metric made
    a thousand lookups per event, each in the relay's fan-out: updates took seconds to reach the last
    socket, and writes waited for the web processes meanwhile. Sockets asking while the first read
    runs wait for it (greenlets: the wait yields)."""

    def __init__(self, keep: int = 512) -> None:
        self.keep = keep
        self._entries: OrderedDict[tuple[Any, ...], tuple[threading.Event, list[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The values of `key` (an event id, organization, subscription and metrics), read by `read`
        the first time; a read that failed fails every socket that asks for that event's values (a
        read time spent is not asked again by each of a thousand sockets)."""
        with self._lock:
            entry = self._entries.get(key)
            mine = entry is None
            if mine:
                entry = (threading.Event(), [])
                self._entries[key] = entry
                while len(self._entries) > self.keep:
                    self._entries.popitem(last=False)
        done, outcome = entry
        if not mine:
            if not done.wait(READ_WAIT_SECONDS):
                return read()  # the first read is still running: this socket reads for itself
            if isinstance(outcome[0], BaseException):
                raise outcome[0]  # the read failed (the read time spent, say): so does this socket's
            return outcome[0]
        try:
            value = read()
            outcome.append(value)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            done.set()
        return value


# Longest a socket waits for another's read of the same event's values before reading them itself.
READ_WAIT_SECONDS = 10.0
EVENT_VALUES = EventValues()


def with_fresh_values(conn: Connection, sub: Subscription, stores: Stores, event: Event) -> Event:
    """A relayed event as this socket sends it: a metric_update gets fresh values of the changed
    metrics it subscribed to, each under its own subscription's filters and clock (read once per
    event and subscription in the process: EventValues). Unchanged, the event goes out as the JSON
    the relay made once."""
    if event["type"] != "metric_update":
        return event
    FORGOTTEN.after(event)
    values: dict[str, Any] = {}
    omitted: dict[str, str] = {}
    for group in list(sub.groups):
        wanted = _wanted(group, event)
        if not wanted:
            continue
        key = (event.get("id"), conn.org_id, group.key(), tuple(wanted))

        def read(group: Group = group, wanted: list[str] = wanted) -> dict[str, Any]:
            return stores.values(conn.org_id, wanted, group.filters, group.clock)["metrics"]

        try:
            values.update(EVENT_VALUES.get(key, read))
        except ScheduleGone as exc:
            _end_group(conn, sub, group, exc)
        except messages.MessageError as exc:
            # The read time is spent: the event goes without these values, and says so.
            omitted.update(dict.fromkeys(wanted, str(exc)))
        except Exception:
            log.exception("fresh values failed org=%s", conn.org_id)
            omitted.update(dict.fromkeys(wanted, "the values could not be read (the failure was logged)"))
    if not values and not omitted:
        return event
    data = {**event["data"]}
    if values:
        data["values"] = values
    if omitted:
        # Which subscribed metrics moved but come without values, and why: read them again later.
        data["values_omitted"] = omitted
    return {**event, "data": data}
