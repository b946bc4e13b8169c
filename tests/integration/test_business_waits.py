"""The waits (requester_wait_time, agent_wait_time, on_hold_time) on a business clock, against an
interval walk written here from the contract.

A New York organization has the split-shift schedule of test_business_clock (weekdays 09:00-12:00
and 13:00-17:30, Saturday 10:00-14:00, Sunday 01:30-03:30 and 20:00-24:00, two holidays), and
tickets whose status histories pause (pending, on_hold), solve, reopen and solve again around both
daylight-saving changes and both holidays. Some are imported with their histories, some written
change by change. This module keeps its own copy of every history and computes each expected value
itself: at each solve, for the metric's statuses, the overlap of every span in them (cut at the
solve) with the schedule's open spans (made from local wall-clock times with zoneinfo, fold=0),
added up. Every surface must answer exactly that: time series (rollups and raw), aggregations with
percentiles, exports, live values, time in status; and rollups must stay exact after writes, imports
and schedule changes.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from tests.conftest import Tenant, _make_tenant
from tests.integration.test_business_clock import (
    AUTUMN,
    SPANS,
    SPRING,
    ZONE,
    business_hours,
    open_spans,
    schedule_body,
)
from webapp.analytics import queries, rollups
from webapp.analytics.clock import Clock
from webapp.analytics.provenance import ReadOptions, reading
from webapp.clocks.schedules import create_schedule
from webapp.live.subscriptions import current_values
from webapp.models import Organization, Ticket
from webapp.tickets.imports import import_rows
from webapp.tickets.writes import create_ticket, update_ticket

SEED = 1517
WAITS: dict[str, tuple[str, ...]] = {
    "requester_wait_time": ("open", "on_hold"),
    "agent_wait_time": ("pending",),
    "on_hold_time": ("on_hold",),
}
# Every metric checked here: the waits, and the next replies (a duration ending at its event).
METRICS = (*sorted(WAITS), "next_reply_time")
DONE = ("resolved", "closed")
UNSOLVED = ("open", "pending", "on_hold")
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone")
RANGE = (date(2026, 2, 20), date(2026, 11, 20))
# The daily series: around the spring change, and around the autumn one (each within 30 days).
SERIES = ((date(2026, 2, 25), date(2026, 3, 25)), (date(2026, 10, 23), date(2026, 11, 20)))
TOL = 1e-9


@dataclass
class Model:
    """One ticket as this module wrote it: its own copy, never read back."""

    created: datetime
    priority: str
    channel: str
    history: list[tuple[datetime, str]] = field(default_factory=list)
    # (author, at, public)
    replies: list[tuple[str, datetime, bool]] = field(default_factory=list)

    def next_reply_pairs(self) -> list[tuple[datetime, datetime]]:
        """(customer reply, agent reply) of every wait for a next reply, from the public replies."""
        pairs, agent_seen, waiting = [], False, None
        for author, at, public in sorted(self.replies, key=lambda r: r[1]):
            if not public:
                continue
            if author == "agent":
                if waiting is not None:
                    pairs.append((waiting, at))
                    waiting = None
                agent_seen = True
            elif agent_seen and waiting is None:
                waiting = at
        return pairs

    def solves(self) -> list[datetime]:
        out, before = [], None
        for at, status in self.history:
            if status in DONE and (before is None or before in UNSOLVED):
                out.append(at)
            before = status
        return out

    def hours_in(
        self, statuses: tuple[str, ...], until: datetime, spans: list[tuple[datetime, datetime]] = SPANS
    ) -> float:
        """Open hours spent in `statuses` from creation to `until`: each span cut there, walked."""
        total = 0.0
        for i, (at, status) in enumerate(self.history):
            if status not in statuses or at >= until:
                continue
            end = self.history[i + 1][0] if i + 1 < len(self.history) else until
            total += business_hours(at, min(end, until), spans)
        return total

    def calendar_hours_in(self, statuses: tuple[str, ...], until: datetime) -> float:
        total = 0.0
        for i, (at, status) in enumerate(self.history):
            if status in statuses and at < until:
                end = self.history[i + 1][0] if i + 1 < len(self.history) else until
                total += (min(end, until) - at).total_seconds() / 3600
        return total


@dataclass(frozen=True)
class Wait:
    metric: str
    at: datetime
    hours: float
    priority: str
    channel: str


def waits_of(models: list[Model], spans: list[tuple[datetime, datetime]] = SPANS) -> list[Wait]:
    out = [
        Wait(metric, solve, m.hours_in(statuses, solve, spans), m.priority, m.channel)
        for m in models
        for solve in m.solves()
        for metric, statuses in WAITS.items()
    ]
    out += [
        Wait("next_reply_time", stop, business_hours(start, stop, spans), m.priority, m.channel)
        for m in models
        for start, stop in m.next_reply_pairs()
    ]
    return out


def _moment(rng: random.Random) -> datetime:
    first, last = rng.choice((SPRING, AUTUMN))
    start = datetime.combine(first, time(), tzinfo=ZONE)
    seconds = int((datetime.combine(last, time(), tzinfo=ZONE) - start).total_seconds())
    return (start + timedelta(seconds=rng.randrange(seconds))).astimezone(UTC)


def generate(rng: random.Random, count: int) -> list[Model]:
    """Histories that pause, solve, reopen and solve again, each change 10 minutes to 2 days on."""
    out = []
    for _ in range(count):
        created = _moment(rng)
        model = Model(created, rng.choice(PRIORITIES), rng.choice(CHANNELS), [(created, "open")])
        at, status = created, "open"
        for _ in range(rng.randrange(1, 8)):
            at += timedelta(seconds=rng.randrange(600, 48 * 3600))
            if status in DONE:
                choices = ["open", "pending", "on_hold"] + (["closed"] if status == "resolved" else [])
            else:
                choices = [s for s in (*UNSOLVED, "resolved", "resolved", "closed") if s != status]
            status = rng.choice(choices)
            model.history.append((at, status))
        for _ in range(rng.randrange(1, 10)):
            seconds = rng.randrange(60, int((at - created).total_seconds()) + 36 * 3600)
            author = rng.choice(("agent", "customer"))
            model.replies.append((author, created + timedelta(seconds=seconds), rng.random() < 0.85))
        out.append(model)
    return out


def row_of(model: Model) -> dict[str, Any]:
    return {
        "created_at": model.created.isoformat(),
        "priority": model.priority,
        "channel": model.channel,
        "category": "general",
        "status_history": [{"status": s, "at": at.isoformat()} for at, s in model.history],
        "replies": [{"author": a, "at": at.isoformat(), "public": p} for a, at, p in model.replies],
    }


def write_changes(session: Session, org: Organization, model: Model) -> None:
    """The model's ticket written change by change through the write path."""
    fields = {
        "created_at": model.created,
        "priority": model.priority,
        "channel": model.channel,
        "category": "general",
    }
    ticket = create_ticket(session, org, fields, now=model.created).ticket
    model.replies.clear()  # replies are the import's here
    for (_, before), (at, status) in zip(model.history, model.history[1:], strict=False):
        change_status(session, org, ticket, before, status, at)


def change_status(
    session: Session, org: Organization, ticket: Ticket, before: str, status: str, at: datetime
) -> None:
    change: dict[str, Any] = {"status": status}
    if status in DONE and before not in DONE:
        change["resolved_at"] = at
    update_ticket(session, org, ticket, change, now=at)


@dataclass
class World:
    tenant: Tenant
    app: Flask
    schedule_id: int
    models: list[Model]
    waits: list[Wait]


@pytest.fixture(scope="module")
def world(base_app: Flask) -> Iterator[World]:
    tenant = _make_tenant(base_app, "Waits", "America/New_York")
    session = base_app.extensions["db_sessionmaker"]()
    try:
        org = session.get(Organization, tenant.org_id)
        assert org is not None
        schedule = create_schedule(session, tenant.org_id, schedule_body())
        rng = random.Random(SEED)
        imported, written = generate(rng, 260), generate(rng, 40)
        report, _, _ = import_rows(session, org, [row_of(m) for m in imported])
        assert report.imported == len(imported)
        for model in written:
            write_changes(session, org, model)
        session.commit()
        rollups.build(
            session, org_id=tenant.org_id, start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime.now(UTC)
        )
        assert rollups.build_business(session, org_id=tenant.org_id, schedule_id=schedule.id) is not None
        session.commit()
        models = imported + written
        yield World(tenant, base_app, schedule.id, models, waits_of(models))
    finally:
        session.rollback()
        session.execute(delete(Organization).where(Organization.id == tenant.org_id))
        session.commit()
        session.close()


@pytest.fixture
def session(world: World) -> Iterator[Session]:
    s = world.app.extensions["db_sessionmaker"]()
    yield s
    s.rollback()
    s.close()


def _close(actual: float | None, expected: float | None, what: str) -> None:
    if expected is None:
        assert actual is None, what
    else:
        assert actual is not None, what
        assert math.isclose(actual, expected, rel_tol=TOL, abs_tol=TOL), f"{what}: {actual!r} != {expected!r}"


def _daily(waits: list[Wait], metric: str, span: tuple[date, date] = RANGE) -> dict[date, list[float]]:
    days: dict[date, list[float]] = {}
    for w in waits:
        if w.metric == metric and span[0] <= w.at.astimezone(ZONE).date() < span[1]:
            days.setdefault(w.at.astimezone(ZONE).date(), []).append(w.hours)
    return days


def test_the_data_pauses_reopens_and_is_counted_apart_from_the_calendar(world: World):
    assert sum(len(m.solves()) > 1 for m in world.models) >= 20  # reopened and solved again
    for metric in METRICS:
        values = [w.hours for w in world.waits if w.metric == metric]
        assert sum(v > 0 for v in values) >= 40, metric
    # Business hours are fewer than calendar hours somewhere, so a calendar answer cannot pass.
    assert any(
        m.hours_in(("pending",), s) < m.calendar_hours_in(("pending",), s) - 1
        for m in world.models
        for s in m.solves()
    )


@pytest.mark.parametrize("span", SERIES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("exact", [False, True])
def test_daily_series_on_the_business_clock(world: World, metric: str, exact: bool, span: tuple[date, date]):
    path = (
        f"/api/v1/analytics/time-series/{metric}?granularity=daily&start={span[0]}&end={span[1]}"
        f"&clock=business{'&exact=true' if exact else ''}"
    )
    answer = world.tenant.viewer.get(path)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["clock"], body["schedule_id"]) == ("business", world.schedule_id)
    assert body["meta"]["source"] == ("raw" if exact else "rollup")
    expected = _daily(world.waits, metric, span)
    seen = 0
    for point in body["points"]:
        values = expected.get(datetime.fromisoformat(point["bucket"]).date(), [])
        assert point["count"] == len(values), point["bucket"]
        seen += len(values)
        _close(point["value"], float(np.mean(values)) if values else None, f"avg {point['bucket']}")
        _close(point["min"], min(values) if values else None, f"min {point['bucket']}")
        _close(point["max"], max(values) if values else None, f"max {point['bucket']}")
    assert seen == sum(len(v) for v in expected.values()) > 0


def test_the_calendar_clock_is_unchanged(world: World):
    for metric, statuses in WAITS.items():
        path = f"/api/v1/analytics/time-series/{metric}?granularity=monthly&start={RANGE[0]}&end={RANGE[1]}"
        body = world.tenant.viewer.get(path).get_json()
        assert body["clock"] == "calendar"
        values = [m.calendar_hours_in(statuses, s) for m in world.models for s in m.solves()]
        assert body["summary"]["total_count"] == len(values)
        _close(body["summary"]["avg"], float(np.mean(values)), metric)


def test_aggregations_with_percentiles_by_priority(world: World):
    body = {
        "metrics": list(METRICS),
        "group_by": ["priority"],
        "percentiles": [50, 95, 99],
        "start": RANGE[0].isoformat(),
        "end": RANGE[1].isoformat(),
        "clock": "business",
    }
    answer = world.tenant.viewer.post("/api/v1/analytics/aggregations", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["clock"] == "business"
    rows = {row["group"]["priority"]: row for row in answer.get_json()["rows"]}
    for priority in PRIORITIES:
        for metric in METRICS:
            values = np.array([w.hours for w in world.waits if w.metric == metric and w.priority == priority])
            stats = rows[priority][metric]
            assert stats["count"] == len(values)
            _close(stats["avg"], float(values.mean()), f"{priority} {metric} avg")
            _close(stats["min"], float(values.min()), f"{priority} {metric} min")
            for p in (50, 95, 99):
                _close(stats[f"p{p}"], float(np.percentile(values, p)), f"{priority} {metric} p{p}")


@pytest.mark.parametrize("group_by", [[], ["channel"], ["priority", "channel"], ["category", "assigned_to"]])
def test_rollup_answers_equal_raw_answers(world: World, session: Session, group_by: list[str]):
    read = {
        "org_id": world.tenant.org_id,
        "start": datetime(2026, 2, 25, 3, 17, tzinfo=UTC),
        "end": datetime(2026, 11, 9, 22, 41, tzinfo=UTC),
        "filters": {"channel": ["email", "chat"]} if not group_by else {},
        "group_by": group_by,
        "clock": Clock(world.schedule_id),
    }
    for metric in METRICS:
        with reading(ReadOptions()):
            rolled = queries.aggregate(session, metric=metric, **read)
        with reading(ReadOptions(rollups=False)):
            raw = queries.aggregate(session, metric=metric, **read)
        assert rolled.keys() == raw.keys()
        for key in raw:
            assert rolled[key]["count"] == raw[key]["count"]
            for stat in ("avg", "min", "max"):
                _close(rolled[key][stat], raw[key][stat], f"{metric} {key} {stat}")


def test_sketch_percentiles_from_business_rollups(world: World, session: Session):
    values = np.array([w.hours for w in world.waits if w.metric == "requester_wait_time"])
    with reading(ReadOptions(approximate_above=0)) as provenance:
        stats = queries.measure(
            session,
            org_id=world.tenant.org_id,
            metric="requester_wait_time",
            start=datetime(2026, 2, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
            filters={},
            percentiles=(50, 95),
            clock=Clock(world.schedule_id),
        )
    assert (provenance.approximate, provenance.source) == (True, "rollup")
    assert stats["count"] == len(values)
    for p in (50, 95):
        exact = float(np.percentile(values, p))
        assert abs(stats[f"p{p}"] - exact) <= 0.011 * abs(exact), p


def test_a_business_hours_export(world: World):
    request = {
        "format": "csv",
        "dataset": "time-series",
        "query": {
            "metric": "agent_wait_time",
            "granularity": "daily",
            "start": "2026-03-01",
            "end": "2026-03-21",
            "clock": "business",
        },
    }
    answer = world.tenant.viewer.post("/api/v1/analytics/export?mode=sync", json=request)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    expected = _daily(world.waits, "agent_wait_time", (date(2026, 3, 1), date(2026, 3, 21)))
    assert len(rows) == 20
    assert sum(int(row["count"]) for row in rows) > 0
    for row in rows:
        values = expected.get(datetime.fromisoformat(row["bucket"]).date(), [])
        assert int(row["count"]) == len(values)
        if values:
            _close(float(row["value"]), float(np.mean(values)), row["bucket"])


def test_live_values_on_the_business_clock(world: World, session: Session):
    def inside(now: datetime) -> dict[str, list[float]]:
        return {
            metric: [
                w.hours for w in world.waits if w.metric == metric and now - timedelta(hours=24) <= w.at < now
            ]
            for metric in METRICS
        }

    # The first 24 hours (ending just after a next reply) holding measurements of every metric.
    candidates = sorted(w.at + timedelta(hours=1) for w in world.waits if w.metric == "next_reply_time")
    now = next(at for at in candidates if all(any(v > 0 for v in vs) for vs in inside(at).values()))
    values = current_values(
        session,
        org_id=world.tenant.org_id,
        metrics=list(METRICS),
        filters={},
        now=now,
        clock=Clock(world.schedule_id),
    )["metrics"]
    for metric, expected in inside(now).items():
        assert values[metric]["count"] == len(expected) > 0
        _close(values[metric]["value"], float(np.mean(expected)), metric)
        _close(values[metric]["max"], max(expected), metric)


def test_time_in_status_on_the_business_clock(world: World):
    query = {"start": RANGE[0].isoformat(), "end": RANGE[1].isoformat(), "clock": "business"}
    answer = world.tenant.viewer.get("/api/v1/analytics/time-in-status", query_string=query)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["clock"] == "business"
    got = {row["status"]: row for row in body["statuses"]}
    zero_hours = 0
    for status in UNSOLVED:
        # The tickets that spent any time in the status (calendar time), each with its open hours
        # there: 0 for a ticket that spent it all out of hours, still counted.
        spent = [
            m.hours_in((status,), m.solves()[-1])
            for m in world.models
            if m.solves() and m.calendar_hours_in((status,), m.solves()[-1]) > 0
        ]
        zero_hours += spent.count(0.0)
        assert got[status]["tickets"] == len(spent)
        _close(got[status]["total_hours"], sum(spent), status)
        _close(got[status]["p50"], float(np.percentile(spent, 50)), status)
    assert zero_hours, "no ticket spent a status wholly out of hours: the case is not covered"


def _measure(
    session: Session, org_id: int, metric: str, schedule_id: int, percentiles: tuple[int, ...] = ()
) -> tuple[dict[str, Any], str]:
    with reading(ReadOptions()) as provenance:
        stats = queries.measure(
            session,
            org_id=org_id,
            metric=metric,
            start=datetime(2026, 2, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
            filters={},
            percentiles=percentiles,
            clock=Clock(schedule_id),
        )
    return stats, provenance.source


def _check(
    session: Session, org_id: int, schedule_id: int, waits: list[Wait], source: str, exact: str | None = None
) -> None:
    """Count, avg and max from rollups (`source`); and exact percentiles from the stored business
    values (`exact`: where they came from, by default `source` too)."""
    for metric in METRICS:
        expected = [w.hours for w in waits if w.metric == metric]
        stats, answered = _measure(session, org_id, metric, schedule_id)
        assert stats["count"] == len(expected), metric
        if not expected:  # nothing measured: no side answered
            continue
        assert answered == source, metric
        _close(stats["avg"], float(np.mean(expected)), metric)
        _close(stats["max"], max(expected), metric)
        stats, answered = _measure(session, org_id, metric, schedule_id, (50, 95))
        assert answered == (exact or source), metric
        assert stats["count"] == len(expected), metric
        _close(stats["avg"], float(np.mean(expected)), metric)
        for p in (50, 95):
            _close(stats[f"p{p}"], float(np.percentile(expected, p)), f"{metric} p{p}")


def test_business_rollups_stay_exact_after_writes_imports_and_schedule_changes(
    make_tenant: Any, app: Flask, db_session: Session
):
    tenant = make_tenant("Waits later", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    org = db_session.get(Organization, tenant.org_id)
    assert org is not None
    rng = random.Random(SEED + 1)
    models = generate(rng, 30)
    for model in models:
        write_changes(db_session, org, model)
    db_session.commit()
    rollups.refresh(db_session, org_id=tenant.org_id)
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    db_session.commit()
    _check(db_session, tenant.org_id, schedule["id"], waits_of(models), "rollup")

    # Reopens and pauses written later move solves' waits: marked, refreshed, exact again.
    tickets = db_session.scalars(
        text("SELECT id FROM tickets WHERE org_id = :o ORDER BY id"), {"o": org.id}
    ).all()
    for model, ticket_id in list(zip(models, tickets, strict=True))[::3]:
        ticket = db_session.get(Ticket, ticket_id)
        assert ticket is not None
        at = model.history[-1][0]
        for status in ("on_hold", "pending", "open", "closed"):
            at += timedelta(hours=rng.uniform(1, 30))
            before = model.history[-1][1]
            if status == before or (status == "closed" and before in DONE):
                continue
            change_status(db_session, org, ticket, before, status, at)
            model.history.append((at, status))
    db_session.commit()
    # Before any refresh: the hours the writes marked are counted from raw events in the same read.
    _check(db_session, tenant.org_id, schedule["id"], waits_of(models), "mixed")
    assert rollups.refresh(db_session, org_id=tenant.org_id) is not None
    db_session.commit()
    _check(db_session, tenant.org_id, schedule["id"], waits_of(models), "rollup")

    # An import adds its solves to the current business rollups in its own transaction.
    imported = generate(rng, 25)
    report, _, _ = import_rows(db_session, org, [row_of(m) for m in imported])
    assert report.imported == len(imported)
    db_session.commit()
    models += imported
    _check(db_session, tenant.org_id, schedule["id"], waits_of(models), "rollup")

    # New hours: the rollups are out of date, reads count raw events on the new hours at once.
    weekdays = {day: [("08:00", "18:00")] for day in range(5)}
    body = {**schedule_body(weekdays), "name": "Office"}
    moved = tenant.admin.patch(f"/api/v1/schedules/{schedule['id']}", json={"intervals": body["intervals"]})
    assert moved.status_code == 200, moved.get_json()
    db_session.commit()
    changed = waits_of(models, open_spans(weekdays))
    _check(db_session, tenant.org_id, schedule["id"], changed, "raw")
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    db_session.commit()
    _check(db_session, tenant.org_id, schedule["id"], changed, "rollup")
    # A new name changes nothing: the rollups stay current.
    renamed = tenant.admin.patch(f"/api/v1/schedules/{schedule['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200
    db_session.commit()
    _check(db_session, tenant.org_id, schedule["id"], changed, "rollup")
