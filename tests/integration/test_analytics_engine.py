"""Every analytics endpoint against an independent computation over generated tickets.

A few thousand tickets are generated with a fixed seed and written through the domain functions
(create_ticket / update_ticket). While generating, this module keeps its own model of every ticket
and of every measured event (time, dimensions at that moment, value), written from the metric
definitions in shared/ARCHITECTURE.md. Expected answers are computed from that model with plain
loops and numpy: never from the SQL's output and never from the ticket_events table.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import delete, text

from tests.conftest import Tenant, _make_tenant, wait_for_job
from webapp.analytics.snapshots import compute_snapshot, upsert_snapshot
from webapp.models import Organization
from webapp.tickets.writes import create_ticket, update_ticket

SEED = 20261125
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
KOLKATA = ZoneInfo("Asia/Kolkata")
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone", "web", "social", "api")
CATEGORIES = ("billing", "bug", "account", "shipping")
AGENTS = (None, "ana", "ben", "chen", "dia")
DONE = ("resolved", "closed")
DIMS = ("status", "priority", "channel", "category", "assigned_to")
# The daylight-saving changes of 2026 in New York and Berlin, as UTC instants.
TRANSITIONS = (
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
)
FIRST = datetime(2026, 2, 15, tzinfo=UTC)
LAST = datetime(2026, 11, 15, tzinfo=UTC)
# Nothing at all happens in these local New York days.
EMPTY = (datetime(2026, 6, 10, tzinfo=NY), datetime(2026, 6, 15, tzinfo=NY))
SLA_OVERRIDES = {"urgent": {"first_response_hours": 2}, "low": {"resolution_hours": 96}}
TARGETS = {
    "urgent": {"first_response_hours": 2.0, "resolution_hours": 4.0},
    "high": {"first_response_hours": 4.0, "resolution_hours": 24.0},
    "normal": {"first_response_hours": 8.0, "resolution_hours": 48.0},
    "low": {"first_response_hours": 24.0, "resolution_hours": 96.0},
}
METRIC_EVENT = {
    "ticket_count": "created",
    "response_time": "first_response",
    "resolution_time": "resolved",
    "sentiment_score": "created",
}


# --- the independent model ---------------------------------------------------------------------


@dataclass
class Event:
    kind: str  # created | first_response | resolved
    at: datetime
    dims: dict[str, str | None]
    value: float | None
    ticket: ModelTicket


@dataclass
class ModelTicket:
    created_at: datetime
    dims: dict[str, str | None]
    sentiment: float | None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    events: list[Event] = field(default_factory=list)
    # (instant, status) from creation on: what the SLA policy's resolution clock runs on.
    statuses: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass
class World:
    ny: Tenant
    berlin: Tenant
    tickets: dict[int, list[ModelTicket]]  # org id -> tickets
    app: Flask

    def events(self, org_id: int, kind: str) -> list[Event]:
        return [e for t in self.tickets[org_id] for e in t.events if e.kind == kind]


def hours(a: datetime, b: datetime) -> float:
    """Real elapsed hours (UTC: two times of one zone object subtract as wall-clock times)."""
    return (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds() / 3600.0


def _in_empty(moment: datetime) -> bool:
    return EMPTY[0] <= moment < EMPTY[1]


def _plan(rng: random.Random, created: datetime, recent: bool) -> list[tuple[datetime, str, Any]]:
    """A ticket's life after creation: (moment, operation, argument), in time order."""
    ops: list[tuple[datetime, str, Any]] = []
    if recent:
        return ops
    t = created
    if rng.random() < 0.25:
        t += timedelta(seconds=rng.uniform(60, 3 * 3600))
        ops.append((t, "priority", rng.choice(PRIORITIES)))
    if rng.random() < 0.2:
        t += timedelta(seconds=rng.uniform(60, 3 * 3600))
        ops.append((t, "assigned_to", rng.choice(AGENTS)))
    if rng.random() < 0.85:
        t += timedelta(seconds=rng.uniform(30, 30 * 3600))
        ops.append((t, "first_response", None))
    if rng.random() < 0.15:
        t += timedelta(seconds=rng.uniform(60, 3600))
        ops.append((t, "status", rng.choice(("pending", "on_hold"))))
    if rng.random() < 0.05:
        t += timedelta(seconds=rng.uniform(60, 3600))
        ops.append((t, "category", rng.choice(CATEGORIES)))
    if rng.random() < 0.65:
        t += timedelta(seconds=rng.uniform(60, 100 * 3600))
        ops.append((t, "resolve", rng.choice(DONE)))
        if rng.random() < 0.2:
            t += timedelta(seconds=rng.uniform(3600, 48 * 3600))
            ops.append((t, "reopen", None))
            if rng.random() < 0.75:
                t += timedelta(seconds=rng.uniform(3600, 72 * 3600))
                ops.append((t, "resolve", rng.choice(DONE)))
    if rng.random() < 0.1:
        t += timedelta(seconds=rng.uniform(60, 3600))
        ops.append((t, "sentiment", round(rng.uniform(-1, 1), 3)))
    return ops


def _created_at(rng: random.Random) -> datetime:
    while True:
        if rng.random() < 0.45:
            moment = rng.choice(TRANSITIONS) + timedelta(seconds=rng.uniform(-36 * 3600, 36 * 3600))
        else:
            moment = FIRST + timedelta(seconds=rng.uniform(0, (LAST - FIRST).total_seconds()))
        if not _in_empty(moment):
            return moment


def _generate(
    session: Any, org: Organization, tz: ZoneInfo, count: int, rng: random.Random
) -> list[ModelTicket]:
    now = datetime.now(UTC)
    # Exactly on bucket edges: local midnights and both starts of the repeated autumn hour.
    edges = [
        datetime(2026, 3, 8, tzinfo=tz),
        datetime(2026, 3, 9, tzinfo=tz),
        datetime(2026, 11, 1, 5, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
        datetime(2026, 10, 25, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=tz),
    ]
    model: list[ModelTicket] = []
    for i in range(count):
        recent = i >= count - 12
        while True:
            if recent:
                # Unanswered: half within every target (pending), half past the urgent first-response one.
                overdue = i % 2 == 0
                created = now - timedelta(minutes=rng.uniform(150, 170) if overdue else rng.uniform(5, 30))
            elif i < len(edges):
                created = edges[i]
            else:
                created = _created_at(rng)
            ops = _plan(rng, created, recent)
            if not any(_in_empty(at) or at > now - timedelta(hours=1) for at, _, _ in ops):
                break
        dims: dict[str, str | None] = {
            "status": "open",
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(CHANNELS),
            "category": rng.choice(CATEGORIES),
            "assigned_to": rng.choice(AGENTS),
        }
        if recent and overdue:
            dims["priority"] = "urgent"
        sentiment = None if rng.random() < 0.2 else round(rng.uniform(-1, 1), 3)
        ticket = ModelTicket(created, dims, sentiment, statuses=[(created, "open")])
        backfill = rng.random() < 0.4 and all(op in ("first_response", "resolve") for _, op, _ in ops)
        backfill = backfill and [op for _, op, _ in ops].count("resolve") <= 1
        fields: dict[str, Any] = {
            "created_at": created,
            "sentiment_score": sentiment,
            **{k: dims[k] for k in ("priority", "channel", "category", "assigned_to")},
        }
        if backfill:
            # One create carries the whole history; before its resolution the ticket was open.
            for at, op, arg in ops:
                if op == "first_response":
                    fields["first_response_at"] = at
                else:
                    fields["resolved_at"], fields["status"] = at, arg
            ticket.events.append(Event("created", created, dict(dims), None, ticket))
            resolved = fields.get("resolved_at")
            if "first_response_at" in fields:
                at = fields["first_response_at"]
                ticket.first_response_at = at
                ticket.events.append(Event("first_response", at, dict(dims), hours(created, at), ticket))
            if resolved is not None:
                ticket.dims["status"] = fields["status"]
                ticket.resolved_at = resolved
                ticket.statuses.append((resolved, fields["status"]))
                ticket.events.append(
                    Event("resolved", resolved, dict(ticket.dims), hours(created, resolved), ticket)
                )
            create_ticket(session, org, fields, now=now)
            model.append(ticket)
            continue

        change = create_ticket(session, org, fields, now=now)
        ticket.events.append(Event("created", created, dict(dims), None, ticket))
        row = change.ticket
        for at, op, arg in ops:
            if op in ("priority", "assigned_to", "category"):
                update_ticket(session, org, row, {op: arg}, now=at)
                ticket.dims[op] = arg
            elif op == "status":
                update_ticket(session, org, row, {"status": arg}, now=at)
                ticket.dims["status"] = arg
                ticket.statuses.append((at, arg))
            elif op == "sentiment":
                update_ticket(session, org, row, {"sentiment_score": arg}, now=at)
                ticket.sentiment = arg
            elif op == "first_response":
                update_ticket(session, org, row, {"first_response_at": at}, now=at)
                ticket.first_response_at = at
                ticket.events.append(
                    Event("first_response", at, dict(ticket.dims), hours(created, at), ticket)
                )
            elif op == "resolve":
                update_ticket(session, org, row, {"status": arg, "resolved_at": at}, now=at)
                ticket.dims["status"] = arg
                ticket.resolved_at = at
                ticket.statuses.append((at, arg))
                ticket.events.append(Event("resolved", at, dict(ticket.dims), hours(created, at), ticket))
            elif op == "reopen":
                update_ticket(session, org, row, {"status": "open"}, now=at)
                ticket.dims["status"] = "open"
                ticket.resolved_at = None
                ticket.statuses.append((at, "open"))
        model.append(ticket)
    return model


@pytest.fixture(scope="module")
def world(base_app: Flask) -> Iterator[World]:
    ny = _make_tenant(base_app, "Engine NY", "America/New_York")
    berlin = _make_tenant(base_app, "Engine Berlin", "Europe/Berlin")
    session = base_app.extensions["db_sessionmaker"]()
    rng = random.Random(SEED)
    tickets = {}
    try:
        for tenant, tz, count in ((ny, NY, 1000), (berlin, BERLIN, 300)):
            org = session.get(Organization, tenant.org_id)
            if tenant is ny:
                org.sla_targets = SLA_OVERRIDES
            tickets[tenant.org_id] = _generate(session, org, tz, count, rng)
        session.commit()
        # Statistics now, not whenever autovacuum gets to them: a plan that changes mid-module reads
        # the rows in another order, and sums floats (averages) in another, so an aggregation job
        # would differ in the last bits from the same answer cached a moment before.
        session.execute(text("ANALYZE tickets, ticket_events"))
        session.commit()
        yield World(ny, berlin, tickets, base_app)
    finally:
        session.rollback()
        session.execute(delete(Organization).where(Organization.id.in_([ny.org_id, berlin.org_id])))
        session.commit()
        session.close()


# --- expectations, from the definitions ---------------------------------------------------------


def local_floor(moment: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    """The start of the local period holding `moment` (hourly: the wall-clock hour, with its offset)."""
    local = moment.astimezone(tz)
    if granularity == "hourly":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.date()
    if granularity == "weekly":
        day -= timedelta(days=day.weekday())
    elif granularity == "monthly":
        day = day.replace(day=1)
    elif granularity == "quarterly":
        day = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    elif granularity == "yearly":
        day = date(day.year, 1, 1)
    return datetime.combine(day, time(), tzinfo=tz)


def _step(day: date, granularity: str) -> date:
    if granularity == "daily":
        return day + timedelta(days=1)
    if granularity == "weekly":
        return day + timedelta(days=7)
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[granularity]
    index = day.month - 1 + months
    return date(day.year + index // 12, index % 12 + 1, 1)


def expected_labels(granularity: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[str]:
    labels = []
    if granularity == "hourly":
        # Every zone used here shifts by whole hours, so local hours start one UTC hour apart.
        moment = local_floor(start, "hourly", tz).astimezone(UTC)
        while moment < end:
            labels.append(moment.astimezone(tz).isoformat())
            moment += timedelta(hours=1)
        return labels
    day = local_floor(start, granularity, tz).date()
    while datetime.combine(day, time(), tzinfo=tz) < end:
        labels.append(datetime.combine(day, time(), tzinfo=tz).isoformat())
        day = _step(day, granularity)
    return labels


def parse_filters(raw: dict[str, str]) -> dict[str, list[str | None]]:
    return {
        name: [None if (name == "assigned_to" and v == "null") else v for v in value.split(",")]
        for name, value in raw.items()
    }


def matches(dims: dict[str, str | None], filters: dict[str, list[str | None]]) -> bool:
    return all(dims[name] in values for name, values in filters.items())


def measurement(metric: str, event: Event) -> float | None:
    if metric == "ticket_count":
        return 1.0
    if metric == "sentiment_score":
        return event.ticket.sentiment  # the ticket's current score, by definition
    return event.value


def measured(
    world: World,
    org_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    filters: dict[str, list[str | None]],
) -> list[tuple[Event, float]]:
    out = []
    for event in world.events(org_id, METRIC_EVENT[metric]):
        if start <= event.at < end and matches(event.dims, filters):
            value = measurement(metric, event)
            if value is not None:
                out.append((event, value))
    return out


def stats(values: list[float], percentiles: list[int] | None = None) -> dict[str, Any]:
    if not values:
        return {
            "count": 0,
            "avg": None,
            "min": None,
            "max": None,
            **{f"p{p}": None for p in percentiles or []},
        }
    out = {"count": len(values), "avg": float(np.mean(values)), "min": min(values), "max": max(values)}
    for p in percentiles or []:
        out[f"p{p}"] = float(np.percentile(values, p))
    return out


def close(actual: Any, expected: Any, what: str) -> None:
    if expected is None:
        assert actual is None, f"{what}: {actual!r} != None"
    else:
        assert actual is not None, f"{what}: None != {expected!r}"
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"{what}: {actual!r} != {expected!r}"
        )


def assert_stats(actual: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    assert actual["count"] == expected["count"], what
    for key in ("min", "max"):
        if key in expected:
            assert actual[key] == expected[key], f"{what} {key}"
    for key, value in expected.items():
        if key == "avg" or key.startswith("p"):
            close(actual[key], value, f"{what} {key}")


def local_date(text: str, tz: ZoneInfo) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=tz)


def call(tenant: Tenant, path: str, **params: Any) -> dict[str, Any]:
    response = tenant.viewer.get(f"/api/v1/analytics/{path}", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def check_series(
    world: World,
    tenant: Tenant,
    metric: str,
    granularity: str,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    raw_filters: dict[str, str],
    /,
    **query: Any,
) -> None:
    body = call(tenant, f"time-series/{metric}", granularity=granularity, **raw_filters, **query)
    filters = parse_filters(raw_filters)
    labels = expected_labels(granularity, tz, start, end)
    by_label: dict[str, list[float]] = defaultdict(list)
    for event, value in measured(world, tenant.org_id, metric, start, end, filters):
        by_label[local_floor(event.at, granularity, tz).isoformat()].append(value)
    assert set(by_label) <= set(labels)
    assert body["timezone"] == tz.key
    assert datetime.fromisoformat(body["start"]) == start
    assert datetime.fromisoformat(body["end"]) == end
    assert [p["bucket"] for p in body["points"]] == labels
    for point in body["points"]:
        values = by_label.get(point["bucket"], [])
        what = f"{metric} {granularity} {tz.key} {point['bucket']}"
        assert point["count"] == len(values), what
        if metric == "ticket_count":
            assert point["value"] == len(values), what
        else:
            assert_stats(
                {"count": point["count"], "avg": point["value"], "min": point["min"], "max": point["max"]},
                stats(values),
                what,
            )
    everything = [v for values in by_label.values() for v in values]
    summary = body["summary"]
    if metric == "ticket_count":
        counts = [len(by_label.get(label, [])) for label in labels]
        assert summary["total_count"] == sum(counts) == len(everything)
        close(summary["avg"], sum(counts) / len(counts), "summary avg")
        assert (summary["min"], summary["max"]) == (min(counts), max(counts))
    else:
        expected = stats(everything)
        assert summary["total_count"] == expected["count"]
        assert_stats({"count": summary["total_count"], **summary}, expected, f"{metric} summary")


# --- time series ---------------------------------------------------------------------------------

METRICS = ("ticket_count", "response_time", "resolution_time", "sentiment_score")
GRANULARITIES = ("hourly", "daily", "weekly", "monthly", "quarterly", "yearly")


@pytest.mark.parametrize("tz", [NY, BERLIN], ids=lambda z: z.key)
@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("metric", METRICS)
def test_time_series_every_metric_and_granularity(world: World, metric: str, granularity: str, tz: ZoneInfo):
    ranges = (
        [("2026-03-05", "2026-04-02"), ("2026-10-20", "2026-11-05")]
        if granularity == "hourly"
        else [("2026-02-01", "2026-12-01")]
    )
    for first, last in ranges:
        start, end = local_date(first, tz), local_date(last, tz)
        check_series(
            world, world.ny, metric, granularity, tz, start, end, {}, start=first, end=last, tz=tz.key
        )


FILTERS = [
    {"priority": "high,urgent"},
    {"assigned_to": "null,ana"},
    {"status": "open"},
    {"channel": "email,chat", "category": "billing"},
    {"status": "pending,on_hold,resolved", "assigned_to": "null"},
]


@pytest.mark.parametrize("raw_filters", FILTERS, ids=lambda f: ",".join(f))
@pytest.mark.parametrize("metric", METRICS)
def test_time_series_filters_use_the_dimensions_at_the_event(world: World, metric: str, raw_filters):
    start, end = local_date("2026-02-01", NY), local_date("2026-12-01", NY)
    check_series(
        world, world.ny, metric, "daily", NY, start, end, raw_filters, start="2026-02-01", end="2026-12-01"
    )


@pytest.mark.parametrize("tz", [KATHMANDU, KOLKATA], ids=lambda z: z.key)
@pytest.mark.parametrize("metric", ["ticket_count", "response_time"])
def test_time_series_in_zones_with_fractional_offsets(world: World, metric: str, tz: ZoneInfo):
    check_series(
        world,
        world.ny,
        metric,
        "hourly",
        tz,
        local_date("2026-03-07", tz),
        local_date("2026-03-10", tz),
        {},
        start="2026-03-07",
        end="2026-03-10",
        tz=tz.key,
    )
    check_series(
        world,
        world.ny,
        metric,
        "daily",
        tz,
        local_date("2026-02-01", tz),
        local_date("2026-12-01", tz),
        {},
        start="2026-02-01",
        end="2026-12-01",
        tz=tz.key,
    )


@pytest.mark.parametrize("granularity", ["hourly", "daily", "monthly"])
def test_time_series_in_the_organizations_zone_by_default(world: World, granularity: str):
    first, last = ("2026-10-23", "2026-10-28") if granularity == "hourly" else ("2026-02-01", "2026-12-01")
    for metric in METRICS:
        check_series(
            world,
            world.berlin,
            metric,
            granularity,
            BERLIN,
            local_date(first, BERLIN),
            local_date(last, BERLIN),
            {},
            start=first,
            end=last,
        )


def test_time_series_partial_first_bucket_and_explicit_offsets(world: World):
    start = datetime(2026, 3, 4, 13, 30, tzinfo=NY)  # a Wednesday afternoon, naive in the query
    end = datetime(2026, 3, 20, 10, tzinfo=UTC)
    for metric in METRICS:
        check_series(
            world,
            world.ny,
            metric,
            "weekly",
            NY,
            start,
            end,
            {},
            start="2026-03-04T13:30:00",
            end="2026-03-20T10:00:00Z",
        )
    body = call(
        world.ny,
        "time-series/ticket_count",
        granularity="weekly",
        start="2026-03-04T13:30:00",
        end="2026-03-20T06:00:00-04:00",
    )
    assert body["points"][0]["bucket"] == "2026-03-02T00:00:00-05:00"
    assert body["points"][-1]["bucket"] == "2026-03-16T00:00:00-04:00"


def test_time_series_default_range_is_the_last_30_local_days(world: World):
    today = datetime.now(UTC).astimezone(NY).date()
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=NY)
    start = datetime.combine(today + timedelta(days=1 - 30), time(), tzinfo=NY)
    body = call(world.ny, "time-series/ticket_count")
    assert body["granularity"] == "daily"
    assert len(body["points"]) == 30
    check_series(world, world.ny, "ticket_count", "daily", NY, start, end, {})
    assert body["summary"]["total_count"] > 0


def test_empty_days_are_present_with_zero_count_and_null_value(world: World):
    body = call(world.ny, "time-series/response_time", start="2026-06-10", end="2026-06-15")
    assert [(p["count"], p["value"], p["min"], p["max"]) for p in body["points"]] == [
        (0, None, None, None)
    ] * 5
    assert body["summary"] == {"total_count": 0, "avg": None, "min": None, "max": None}
    counts = call(world.ny, "time-series/ticket_count", start="2026-06-10", end="2026-06-15")
    assert [p["value"] for p in counts["points"]] == [0] * 5
    assert counts["summary"] == {"total_count": 0, "avg": 0, "min": 0, "max": 0}


def test_a_repeated_answer_comes_from_the_cache(world: World):
    query = {"granularity": "weekly", "start": "2026-04-01", "end": "2026-07-01", "priority": "low"}
    first = call(world.ny, "time-series/resolution_time", **query)
    second = call(world.ny, "time-series/resolution_time", **query)
    assert first["meta"]["source"] == second["meta"]["source"] == "raw"
    assert second["meta"]["cache"] == "hit"
    assert second["meta"]["computed_at"] == first["meta"]["computed_at"]
    assert second["points"] == first["points"]


# --- aggregations --------------------------------------------------------------------------------

AGGREGATIONS = [
    {
        "metrics": list(METRICS),
        "group_by": ["priority", "channel"],
        "percentiles": [1, 25, 50, 90, 99],
        "start": "2026-02-01",
        "end": "2026-12-01",
    },
    {
        "metrics": ["response_time", "resolution_time"],
        "group_by": ["assigned_to"],
        "granularity": "monthly",
        "filters": {"category": ["billing", "bug"]},
        "start": "2026-02-01",
        "end": "2026-12-01",
    },
    {
        "metrics": ["ticket_count", "sentiment_score"],
        "granularity": "weekly",
        "tz": "Europe/Berlin",
        "start": "2026-03-01",
        "end": "2026-05-01",
    },
    {
        "metrics": ["resolution_time"],
        "group_by": ["status", "category"],
        "percentiles": [50],
        "filters": {"assigned_to": [None, "ana"], "priority": "normal,high"},
        "start": "2026-02-01",
        "end": "2026-12-01",
    },
    {
        "metrics": ["response_time", "sentiment_score"],
        "granularity": "hourly",
        "group_by": ["priority"],
        "start": "2026-10-31T00:00:00",
        "end": "2026-11-02T00:00:00-05:00",
    },
]


def _filters_of(body: dict[str, Any]) -> dict[str, list[str | None]]:
    out = {}
    for name, value in (body.get("filters") or {}).items():
        out[name] = parse_filters({name: value})[name] if isinstance(value, str) else list(value)
    return out


@pytest.mark.parametrize("request_body", AGGREGATIONS, ids=lambda b: "+".join(b["metrics"]))
def test_aggregations_against_groups_computed_in_python(world: World, request_body: dict[str, Any]):
    response = world.ny.viewer.post("/api/v1/analytics/aggregations", json=request_body)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    tz = ZoneInfo(request_body.get("tz", "America/New_York"))
    start = datetime.fromisoformat(request_body["start"])
    start = start.replace(tzinfo=tz) if start.tzinfo is None else start
    end = datetime.fromisoformat(request_body["end"])
    end = end.replace(tzinfo=tz) if end.tzinfo is None else end
    group_by = request_body.get("group_by", [])
    granularity = request_body.get("granularity")
    percentiles = sorted(request_body.get("percentiles", [50, 95, 99]))
    filters = _filters_of(request_body)

    cells: dict[str, dict[tuple, list[float]]] = {}
    for metric in request_body["metrics"]:
        cells[metric] = defaultdict(list)
        for event, value in measured(world, world.ny.org_id, metric, start, end, filters):
            group = tuple(event.dims[name] for name in group_by)
            bucket = local_floor(event.at, granularity, tz).isoformat() if granularity else None
            cells[metric][(group, bucket)].append(value)
    groups = {group for per_metric in cells.values() for group, _ in per_metric} if group_by else {()}
    buckets = expected_labels(granularity, tz, start, end) if granularity else [None]
    ordered = sorted(groups, key=lambda g: tuple((v is None, v or "") for v in g))
    expected_keys = [(group, bucket) for bucket in buckets for group in ordered]

    rows = body["rows"]
    assert [(tuple(r["group"][n] for n in group_by), r.get("bucket")) for r in rows] == expected_keys
    assert all(list(r["group"]) == group_by for r in rows)
    assert body["percentiles"] == percentiles
    for row, key in zip(rows, expected_keys, strict=True):
        for metric in request_body["metrics"]:
            values = cells[metric].get(key, [])
            if metric == "ticket_count":
                assert row[metric] == {"count": len(values)}, key
            else:
                expected = stats(values, percentiles)
                assert set(row[metric]) == set(expected)
                assert_stats(row[metric], expected, f"{metric} {key}")


@pytest.mark.worker
def test_aggregation_async_and_heavy_requests_become_jobs(world: World, celery_worker: Any, monkeypatch):
    request_body = dict(AGGREGATIONS[0])
    sync = world.ny.viewer.post("/api/v1/analytics/aggregations", json=request_body).get_json()
    accepted = world.ny.viewer.post("/api/v1/analytics/aggregations", json={**request_body, "async": True})
    assert accepted.status_code == 202, accepted.get_json()
    job = accepted.get_json()
    assert job["status_url"].endswith(f"/api/v1/jobs/{job['job_id']}")
    done = wait_for_job(world.ny.viewer, job["job_id"], timeout=60)
    assert done["kind"] == "aggregation"
    assert done["state"] == "succeeded", done
    assert done["result"]["rows"] == sync["rows"]

    monkeypatch.setitem(world.app.config, "AGGREGATION_ASYNC_THRESHOLD", 0)
    heavy = world.ny.viewer.post(
        "/api/v1/analytics/aggregations", json={**request_body, "group_by": ["channel"]}
    )
    assert heavy.status_code == 202, heavy.get_json()
    assert wait_for_job(world.ny.viewer, heavy.get_json()["job_id"], timeout=60)["state"] == "succeeded"


# --- distributions, dashboard, performance ---------------------------------------------------------

ENUMERATED = {
    "status": ("open", "pending", "on_hold", "resolved", "closed"),
    "priority": PRIORITIES,
    "channel": CHANNELS,
}


def expected_distribution(
    world: World,
    org_id: int,
    field_name: str,
    start: datetime,
    end: datetime,
    filters: dict[str, list[str | None]],
) -> dict[str | None, int]:
    counts: dict[str | None, int] = dict.fromkeys(
        filters.get(field_name) or ENUMERATED.get(field_name, ()), 0
    )
    for ticket in world.tickets[org_id]:
        if start <= ticket.created_at < end and matches(ticket.dims, filters):
            counts[ticket.dims[field_name]] = counts.get(ticket.dims[field_name], 0) + 1
    return counts


def assert_distribution(actual: dict[str, Any], expected: dict[str | None, int], field_name: str) -> None:
    total = sum(expected.values())
    assert actual["field"] == field_name
    assert actual["total"] == total
    assert {v["value"]: v["count"] for v in actual["values"]} == expected
    for value in actual["values"]:
        close(value["share"], value["count"] / total if total else None, f"share {value['value']}")
    counts = [v["count"] for v in actual["values"]]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    "raw_filters", [{}, {"priority": "urgent,low", "assigned_to": "null"}], ids=["all", "filtered"]
)
@pytest.mark.parametrize("field_name", DIMS)
def test_distribution_counts_current_values(world: World, field_name: str, raw_filters):
    start, end = local_date("2026-03-01", NY), local_date("2026-11-01", NY)
    body = call(world.ny, f"distribution/{field_name}", start="2026-03-01", end="2026-11-01", **raw_filters)
    expected = expected_distribution(
        world, world.ny.org_id, field_name, start, end, parse_filters(raw_filters)
    )
    assert_distribution(body, expected, field_name)
    # Unfiltered: the ticket counts (New York's midnights are whole UTC hours); filtered: the tickets.
    assert body["meta"]["source"] == ("raw" if raw_filters else "rollup")


def expected_sla(
    world: World, org_id: int, start: datetime, end: datetime, filters, now: datetime
) -> dict[str, Any]:
    counts = {p: {k: [0, 0, 0] for k in ("first_response", "resolution")} for p in PRIORITIES}
    for ticket in world.tickets[org_id]:
        if not (start <= ticket.created_at < end and matches(ticket.dims, filters)):
            continue
        priority = ticket.dims["priority"]
        deadline = ticket.created_at + timedelta(hours=TARGETS[priority]["first_response_hours"])
        if ticket.first_response_at is not None:
            counts[priority]["first_response"][0 if ticket.first_response_at <= deadline else 1] += 1
        else:
            counts[priority]["first_response"][1 if deadline < now else 2] += 1
        # The SLA policy's resolution (the default one: no pauses, calendar): the time spent in
        # unsolved statuses, a reopen going on from where the solve stopped it.
        running = timedelta(0)
        ordered = sorted(ticket.statuses, key=lambda change: change[0])
        for (at, status), (until, _) in zip(ordered, [*ordered[1:], (now, "")], strict=True):
            if status not in DONE:
                running += max(until, at) - at
        target = timedelta(hours=TARGETS[priority]["resolution_hours"])
        solved = ticket.dims["status"] in DONE
        counts[priority]["resolution"][
            0 if solved and running <= target else 1 if running > target else 2
        ] += 1

    def outcome(met: int, breached: int, pending: int) -> dict[str, Any]:
        return {
            "met": met,
            "breached": breached,
            "pending": pending,
            "compliance": met / (met + breached) if met + breached else None,
        }

    overall = {
        kind: outcome(*[sum(counts[p][kind][i] for p in PRIORITIES) for i in range(3)])
        for kind in ("first_response", "resolution")
    }
    return {
        "overall": overall,
        "by_priority": {p: {k: outcome(*v) for k, v in counts[p].items()} for p in PRIORITIES},
    }


def assert_sla(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for scope in ("overall", "by_priority"):
        flat_actual = actual[scope] if scope == "by_priority" else {"all": actual[scope]}
        flat_expected = expected[scope] if scope == "by_priority" else {"all": expected[scope]}
        assert set(flat_actual) == set(flat_expected)
        for key, kinds in flat_expected.items():
            for kind, outcome in kinds.items():
                got = flat_actual[key][kind]
                assert (got["met"], got["breached"], got["pending"]) == (
                    outcome["met"],
                    outcome["breached"],
                    outcome["pending"],
                ), (scope, key, kind)
                close(got["compliance"], outcome["compliance"], f"{scope} {key} {kind}")


@pytest.mark.parametrize(
    "query",
    [
        {"start": "2026-02-01", "end": "2026-12-01"},
        {"start": "2026-10-01", "end": "2026-11-05", "channel": "email,web,api", "assigned_to": "null,dia"},
        {},
    ],
    ids=["year", "filtered", "default"],
)
def test_performance_percentiles_and_sla(world: World, query: dict[str, str]):
    body = call(world.ny, "performance", **query)
    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"])
    if "start" in query:
        assert (start, end) == (local_date(query["start"], NY), local_date(query["end"], NY))
    filters = parse_filters({k: v for k, v in query.items() if k in DIMS})
    for metric in ("response_time", "resolution_time"):
        values = [v for _, v in measured(world, world.ny.org_id, metric, start, end, filters)]
        assert_stats(body[metric], stats(values, [50, 95, 99]), metric)
    # The first contract's names, then the policy's (first_reply_hours, next_reply_hours).
    first_contract = ("first_response_hours", "resolution_hours")
    assert {p: {k: t[k] for k in first_contract} for p, t in body["targets"].items()} == TARGETS
    assert_sla(body["sla"], expected_sla(world, world.ny.org_id, start, end, filters, datetime.now(UTC)))
    if not query:
        # The unanswered tickets of the last minutes: pending, except urgent ones past their 2 hours.
        assert body["sla"]["overall"]["first_response"]["pending"] >= 6
        assert body["sla"]["by_priority"]["urgent"]["first_response"]["breached"] >= 6
        assert body["sla"]["by_priority"]["urgent"]["resolution"]["pending"] >= 6


def _kpi(world: World, org_id: int, metric: str, start: datetime, end: datetime, filters) -> float | None:
    values = [v for _, v in measured(world, org_id, metric, start, end, filters)]
    if metric == "ticket_count":
        return len(values)
    return float(np.mean(values)) if values else None


@pytest.mark.parametrize(
    "query",
    [
        {"period": "7d", "end": "2026-11-02"},
        {"period": "90d", "end": "2026-10-01", "priority": "high"},
        {"start": "2026-03-01", "end": "2026-04-01", "assigned_to": "null,ben"},
        {"period": "30d"},
    ],
    ids=["7d", "90d-filtered", "custom", "30d-now"],
)
def test_dashboard_kpis_backlog_series_distributions_and_sla(world: World, query: dict[str, str]):
    body = call(world.ny, "dashboard", **query)
    org_id = world.ny.org_id
    filters = parse_filters({k: v for k, v in query.items() if k in DIMS})
    today = datetime.now(UTC).astimezone(NY).date()
    end = (
        local_date(query["end"], NY)
        if "end" in query
        else datetime.combine(today + timedelta(days=1), time(), NY)
    )
    if "period" in query:
        days = int(query["period"][:-1])
        start = datetime.combine(end.date() - timedelta(days=days), time(), NY)
        previous_start = datetime.combine(end.date() - timedelta(days=2 * days), time(), NY)
    else:
        start = local_date(query["start"], NY)
        previous_start = start - (end - start)
    assert datetime.fromisoformat(body["start"]) == start
    assert datetime.fromisoformat(body["end"]) == end
    assert datetime.fromisoformat(body["previous_start"]) == previous_start
    assert datetime.fromisoformat(body["previous_end"]) == start

    for name, metric in (
        ("ticket_count", "ticket_count"),
        ("avg_response_time", "response_time"),
        ("avg_resolution_time", "resolution_time"),
        ("avg_sentiment_score", "sentiment_score"),
    ):
        value = _kpi(world, org_id, metric, start, end, filters)
        previous = _kpi(world, org_id, metric, previous_start, start, filters)
        kpi = body["kpis"][name]
        close(kpi["value"], value, f"{name} value")
        close(kpi["previous"], previous, f"{name} previous")
        change = None if value is None or not previous else (value - previous) / abs(previous) * 100
        close(kpi["change_pct"], change, f"{name} change_pct")

    open_by_status = {"open": 0, "pending": 0, "on_hold": 0}
    for ticket in world.tickets[org_id]:
        if (
            start <= ticket.created_at < end
            and ticket.dims["status"] not in DONE
            and matches(ticket.dims, filters)
        ):
            open_by_status[ticket.dims["status"]] += 1
    assert body["backlog"] == {"count": sum(open_by_status.values()), "by_status": open_by_status}

    labels = expected_labels("daily", NY, start, end)
    per_day = defaultdict(int)
    for event, _ in measured(world, org_id, "ticket_count", start, end, filters):
        per_day[local_floor(event.at, "daily", NY).isoformat()] += 1
    assert body["ticket_count_series"] == [{"bucket": label, "count": per_day[label]} for label in labels]
    for field_name in ("status", "priority"):
        expected = expected_distribution(world, org_id, field_name, start, end, filters)
        assert_distribution(body["distributions"][field_name], expected, field_name)
    assert_sla(body["sla"], expected_sla(world, org_id, start, end, filters, datetime.now(UTC)))
    # This world has no rollups built: only unfiltered distributions come from the ticket counts.
    assert body["meta"]["source"] == ("raw" if filters else "mixed")


def test_change_pct_is_null_when_the_previous_period_is_empty(world: World):
    body = call(world.ny, "dashboard", start="2026-06-15", end="2026-06-20")  # after the empty days
    assert body["kpis"]["ticket_count"]["previous"] == 0
    assert body["kpis"]["ticket_count"]["change_pct"] is None
    assert body["kpis"]["avg_response_time"]["previous"] is None
    assert body["kpis"]["avg_response_time"]["change_pct"] is None


# --- snapshots -------------------------------------------------------------------------------------


def test_snapshots_are_upserted_and_listed(world: World):
    session = world.app.extensions["db_sessionmaker"]()
    org_id = world.ny.org_id
    try:
        for snapshot_type, day in (
            ("weekly", date(2026, 3, 4)),
            ("daily", date(2026, 11, 1)),
            ("monthly", date(2026, 10, 31)),
        ):
            data = compute_snapshot(session, org_id=org_id, snapshot_type=snapshot_type, snapshot_date=day)
            for _ in range(2):  # a rerun replaces, never duplicates
                upsert_snapshot(
                    session, org_id=org_id, snapshot_type=snapshot_type, snapshot_date=day, data=data
                )
        session.commit()
    finally:
        session.close()

    for snapshot_type, first, last, period_start, period_end in (
        ("weekly", "2026-03-01", "2026-03-31", "2026-03-02", "2026-03-09"),
        ("daily", "2026-11-01", "2026-11-02", "2026-11-01", "2026-11-02"),
        ("monthly", "2026-09-01", "2026-12-01", "2026-10-01", "2026-11-01"),
    ):
        body = call(world.ny, "snapshots", type=snapshot_type, start=first, end=last)
        assert [item["snapshot_date"] for item in body["items"]] == [period_start]
        data = body["items"][0]["data"]
        start, end = local_date(period_start, NY), local_date(period_end, NY)
        assert datetime.fromisoformat(data["start"]) == start
        assert data["ticket_count"] == _kpi(world, org_id, "ticket_count", start, end, {})
        for metric in ("response_time", "resolution_time", "sentiment_score"):
            values = [v for _, v in measured(world, org_id, metric, start, end, {})]
            assert_stats(data[metric], stats(values, [50, 95, 99]), f"snapshot {snapshot_type} {metric}")
