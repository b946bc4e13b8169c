"""Rollup-backed answers equal raw answers, before and after ticket changes, in every time zone.

A few thousand tickets with a fixed seed are written through the domain functions (so the raw tables
mark their hours dirty), rollups are built in bulk, and then every read is computed twice: through
rollups (closed hours) plus raw events, and from raw events alone. Counts, min and max must be
equal; sums and averages within 1e-9 relative (float addition in another order). Changes then
arrive through the API, whose after-commit hook refreshes the rollups, and by direct writes that
leave their hours dirty: the answers must stay equal either way.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from tests.conftest import Tenant, _make_tenant
from webapp.analytics import metric_days, queries, rollups
from webapp.analytics.buckets import make_buckets
from webapp.analytics.planner import grain_for
from webapp.analytics.provenance import ReadOptions, reading
from webapp.models import Organization, Ticket
from webapp.tickets.writes import create_ticket, update_ticket

SEED = 9
FIRST = datetime(2026, 2, 20, tzinfo=UTC)
LAST = datetime(2026, 11, 10, tzinfo=UTC)
# Daylight-saving days of New York and Berlin in 2026, where local days have 23 or 25 hours.
DST = (
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
)
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone", "web")
CATEGORIES = ("billing", "bug", "account")
AGENTS = (None, "ana", "ben", "chen")
METRICS = ("ticket_count", "response_time", "resolution_time", "sentiment_score")
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu")


@dataclass
class World:
    tenant: Tenant
    app: Flask
    ticket_ids: list[int]


def _moment(rng: random.Random) -> datetime:
    if rng.random() < 0.4:
        return rng.choice(DST) + timedelta(seconds=rng.uniform(-30 * 3600, 30 * 3600))
    return FIRST + timedelta(seconds=rng.uniform(0, (LAST - FIRST).total_seconds()))


def _populate(session: Session, org: Organization, rng: random.Random, count: int) -> list[int]:
    now = datetime.now(UTC)
    ids = []
    for _ in range(count):
        created = _moment(rng)
        fields: dict[str, Any] = {
            "created_at": created,
            "priority": rng.choice(PRIORITIES),
            "channel": rng.choice(CHANNELS),
            "category": rng.choice(CATEGORIES),
            "assigned_to": rng.choice(AGENTS),
            "sentiment_score": None if rng.random() < 0.15 else round(rng.uniform(-1, 1), 3),
        }
        ticket = create_ticket(session, org, fields, now=now).ticket
        at = created
        if rng.random() < 0.3:
            at += timedelta(minutes=rng.uniform(1, 120))
            update_ticket(session, org, ticket, {"priority": rng.choice(PRIORITIES)}, now=at)
        if rng.random() < 0.85:
            at += timedelta(minutes=rng.uniform(1, 1500))
            update_ticket(session, org, ticket, {"first_response_at": at}, now=at)
        if rng.random() < 0.6:
            at += timedelta(minutes=rng.uniform(1, 4000))
            update_ticket(session, org, ticket, {"status": "resolved", "resolved_at": at}, now=at)
            if rng.random() < 0.2:
                at += timedelta(minutes=rng.uniform(60, 2000))
                update_ticket(session, org, ticket, {"status": "open"}, now=at)
                at += timedelta(minutes=rng.uniform(60, 2000))
                update_ticket(session, org, ticket, {"status": "closed", "resolved_at": at}, now=at)
        ids.append(ticket.id)
    return ids


@pytest.fixture(scope="module")
def world(base_app: Flask) -> Iterator[World]:
    tenant = _make_tenant(base_app, "Rollups", "America/New_York")
    session = base_app.extensions["db_sessionmaker"]()
    try:
        org = session.get(Organization, tenant.org_id)
        assert org is not None
        ids = _populate(session, org, random.Random(SEED), 800)
        session.commit()
        rollups.build(session, org_id=tenant.org_id, start=FIRST - timedelta(days=3), end=datetime.now(UTC))
        session.commit()
        # Days summed too: reads of the organization's days (New York's) take them where they can.
        assert metric_days.sum_days(
            session, org_id=tenant.org_id, tz_name="America/New_York", now=datetime.now(UTC)
        )
        yield World(tenant, base_app, ids)
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
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"{what}: {actual!r} != {expected!r}"
        )


def _both(call: Any) -> tuple[Any, Any, str]:
    """(rollup-backed answer, raw answer, source of the rollup-backed one)."""
    with reading(ReadOptions()) as provenance:
        rolled = call()
    with reading(ReadOptions(rollups=False)) as raw_provenance:
        raw = call()
    assert raw_provenance.source == "raw"
    return rolled, raw, provenance.source


def _assert_series_equal(rolled: dict[str, Any], raw: dict[str, Any], what: str) -> None:
    assert [p["bucket"] for p in rolled["points"]] == [p["bucket"] for p in raw["points"]], what
    for a, b in zip(rolled["points"], raw["points"], strict=True):
        assert (a["count"], a["min"], a["max"]) == (b["count"], b["min"], b["max"]), f"{what} {a['bucket']}"
        _close(a["value"], b["value"], f"{what} {a['bucket']} value")
    assert rolled["summary"]["total_count"] == raw["summary"]["total_count"], what
    for name in ("min", "max"):
        assert rolled["summary"][name] == raw["summary"][name], f"{what} summary {name}"
    _close(rolled["summary"]["avg"], raw["summary"]["avg"], f"{what} summary avg")


def _assert_cells_equal(rolled: dict, raw: dict, what: str) -> None:
    assert set(rolled) == set(raw), what
    for key, stats in raw.items():
        got = rolled[key]
        assert got["count"] == stats["count"], f"{what} {key}"
        for name in ("min", "max"):
            assert got.get(name) == stats.get(name), f"{what} {key} {name}"
        _close(got.get("avg"), stats.get("avg"), f"{what} {key} avg")


def series(session: Session, org_id: int, metric: str, granularity: str, tz: str, filters=None, days=None):
    zone = ZoneInfo(tz)
    start = datetime(2026, 2, 1, tzinfo=zone) if days is None else days[0].replace(tzinfo=zone)
    end = datetime(2026, 12, 1, tzinfo=zone) if days is None else days[1].replace(tzinfo=zone)
    buckets = make_buckets(granularity, start, end, zone)
    return _both(
        lambda: queries.time_series(
            session,
            org_id=org_id,
            metric=metric,
            buckets=buckets,
            start=start,
            end=end,
            filters=filters or {},
        )
    )


def check_everything(session: Session, org_id: int) -> set[str]:
    """Compare a spread of reads; the sources the rollup-backed ones reported."""
    sources = set()
    for tz in ZONES:
        for metric in METRICS:
            rolled, raw, source = series(session, org_id, metric, "daily", tz)
            _assert_series_equal(rolled, raw, f"{metric} daily {tz}")
            sources.add(source)
    hourly_days = (datetime(2026, 3, 7), datetime(2026, 3, 10))
    autumn_days = (datetime(2026, 10, 24), datetime(2026, 11, 3))
    for tz in ZONES:
        for days in (hourly_days, autumn_days):
            rolled, raw, _ = series(session, org_id, "response_time", "hourly", tz, days=days)
            _assert_series_equal(rolled, raw, f"hourly {tz} {days[0]:%m-%d}")
    for granularity in ("weekly", "monthly", "quarterly", "yearly"):
        for metric in METRICS:
            rolled, raw, _ = series(session, org_id, metric, granularity, "America/New_York")
            _assert_series_equal(rolled, raw, f"{metric} {granularity}")
    for filters in (
        {"priority": ["high", "urgent"]},
        {"assigned_to": [None, "ana"]},
        {"status": ["open"]},
        {"channel": ["chat"], "category": ["bug"]},
    ):
        for metric in METRICS:
            rolled, raw, _ = series(session, org_id, metric, "daily", "Europe/Berlin", filters)
            _assert_series_equal(rolled, raw, f"{metric} {filters}")
    check_cube(session, org_id)
    return sources


# Two or three of status, priority and channel: the cube grain answers.
CUBE_FILTERS = (
    {"priority": ["high", "urgent"], "channel": ["email"]},
    {"status": ["open", "closed"], "priority": ["low"], "channel": ["chat", "web"]},
    {"status": ["resolved"], "channel": ["phone"]},
)
# Every kind of zone: whole-hour, half-hour, 45-minute offsets, DST of one hour and of 30 minutes.
CUBE_ZONES = (*ZONES, "Australia/Lord_Howe")


def check_cube(session: Session, org_id: int) -> None:
    """Reads on two or three cube dimensions equal raw ones in every kind of zone, daily and hourly."""
    for tz in CUBE_ZONES:
        for filters in CUBE_FILTERS:
            for metric in METRICS:
                rolled, raw, source = series(session, org_id, metric, "daily", tz, filters)
                _assert_series_equal(rolled, raw, f"{metric} daily {tz} {filters}")
                # Rollups answered (a filter no event matches has no rollup rows to read either).
                assert source != "raw" or not raw["summary"]["total_count"], (metric, tz, filters)
            for days in (
                (datetime(2026, 3, 7), datetime(2026, 3, 10)),
                (datetime(2026, 10, 24), datetime(2026, 11, 3)),
            ):
                rolled, raw, _ = series(session, org_id, "response_time", "hourly", tz, filters, days=days)
                _assert_series_equal(rolled, raw, f"hourly {tz} {filters} {days[0]:%m-%d}")
        for metric in METRICS:
            rolled, raw, source = _aggregate(session, org_id, metric, ("channel", "priority"), "weekly", tz)
            _assert_cells_equal(rolled, raw, f"{metric} channel x priority weekly {tz}")
            assert source != "raw", (metric, tz)


def _aggregate(session: Session, org_id: int, metric: str, group_by, granularity, tz: str, filters=None):
    zone = ZoneInfo(tz)
    start, end = datetime(2026, 2, 1, tzinfo=zone), datetime(2026, 12, 1, tzinfo=zone)
    buckets = make_buckets(granularity, start, end, zone) if granularity else None
    return _both(
        lambda: queries.aggregate(
            session,
            org_id=org_id,
            metric=metric,
            start=start,
            end=end,
            filters=filters or {},
            group_by=group_by,
            buckets=buckets,
        )
    )


def test_rollup_backed_series_equal_raw_ones(world: World, session: Session):
    sources = check_everything(session, world.tenant.org_id)
    assert "mixed" in sources  # closed hours from rollups, the open tail of the range from raw events
    count = session.execute(
        text("SELECT count(*) FROM analytics_metrics WHERE org_id = :o"), {"o": world.tenant.org_id}
    ).scalar()
    assert count > 0


@pytest.mark.parametrize(
    ("group_by", "granularity", "tz", "filters"),
    [
        ((), None, "UTC", None),
        (("priority",), None, "America/New_York", None),
        (("assigned_to",), "monthly", "Europe/Berlin", None),
        (("status",), "weekly", "Asia/Kolkata", None),
        (("channel",), "daily", "America/New_York", {"channel": ["email", "web"]}),
        (("category", "priority"), "monthly", "UTC", None),
        (("status", "channel"), "daily", "Asia/Kathmandu", {"priority": ["high", "urgent"]}),
        (("priority", "channel"), None, "Australia/Lord_Howe", {"status": ["open", "pending"]}),
    ],
)
def test_rollup_backed_aggregations_equal_raw_ones(
    world: World, session: Session, group_by, granularity, tz, filters
):
    for metric in METRICS:
        rolled, raw, source = _aggregate(
            session, world.tenant.org_id, metric, group_by, granularity, tz, filters
        )
        _assert_cells_equal(rolled, raw, f"{metric} {group_by} {granularity} {tz}")
        # Category with another dimension has no rollup grain: those reads are raw, and say so. The
        # others read rollups (unless no event matches the filters: then no rollup row does either).
        if grain_for([*group_by, *(filters or {})]) is None:
            assert source == "raw"
        else:
            assert source != "raw" or not raw, (metric, group_by, filters)


def test_answers_stay_exact_after_random_changes_through_the_api(world: World, session: Session):
    rng = random.Random(SEED + 1)
    api = world.tenant.agent
    org_id = world.tenant.org_id
    for _ in range(60):
        ticket_id = rng.choice(world.ticket_ids)
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        kind = rng.choice(("create", "resolve", "reopen", "sentiment", "priority"))
        if kind == "create":
            created = _moment(rng)
            body = {
                "created_at": created.isoformat(),
                "priority": rng.choice(PRIORITIES),
                "sentiment_score": 0.5,
            }
            if rng.random() < 0.5:
                body["first_response_at"] = (created + timedelta(hours=rng.uniform(0.1, 9))).isoformat()
            response = api.post("/api/v1/tickets", json=body)
            assert response.status_code == 201, response.get_json()
            world.ticket_ids.append(response.get_json()["id"])
        elif kind == "resolve" and ticket.status not in ("resolved", "closed"):
            response = api.patch(f"/api/v1/tickets/{ticket_id}", json={"status": "resolved"})
            assert response.status_code == 200, response.get_json()
        elif kind == "reopen" and ticket.status in ("resolved", "closed"):
            response = api.patch(f"/api/v1/tickets/{ticket_id}", json={"status": "open"})
            assert response.status_code == 200, response.get_json()
        elif kind == "sentiment":
            value = round(rng.uniform(-1, 1), 3)
            response = api.patch(f"/api/v1/tickets/{ticket_id}", json={"sentiment_score": value})
            assert response.status_code == 200, response.get_json()
        elif kind == "priority":
            response = api.patch(f"/api/v1/tickets/{ticket_id}", json={"priority": rng.choice(PRIORITIES)})
            assert response.status_code == 200, response.get_json()
        session.expire_all()
    # The after-commit hook rebuilt every closed hour the changes marked (sentiment of old tickets,
    # back-filled creations); only the open hour may still be marked.
    closed = rollups.floor_hour(datetime.now(UTC))
    assert rollups.pending(session, org_id=org_id, before=closed) == []
    check_everything(session, org_id)


def test_a_write_that_skips_the_refresh_is_still_read_exactly(world: World, session: Session):
    org_id = world.tenant.org_id
    org = session.get(Organization, org_id)
    assert org is not None
    ticket = session.get(Ticket, world.ticket_ids[0])
    assert ticket is not None
    old_hour = rollups.floor_hour(ticket.created_at)
    # Straight through the domain functions: no after-commit hook, the marks alone keep reads exact.
    update_ticket(session, org, ticket, {"sentiment_score": -0.987})
    created = create_ticket(
        session, org, {"created_at": datetime(2026, 6, 3, 10, 30, tzinfo=UTC), "sentiment_score": 1.0}
    )
    session.commit()
    marks = rollups.pending(session, org_id=org_id, before=rollups.floor_hour(datetime.now(UTC)))
    assert {(m.event_type, m.lo) for m in marks} >= {
        ("created", old_hour),
        ("created", datetime(2026, 6, 3, 10, tzinfo=UTC)),
    }
    rolled, raw, _ = series(session, org_id, "sentiment_score", "daily", "UTC")
    _assert_series_equal(rolled, raw, "dirty sentiment")
    world.ticket_ids.append(created.ticket.id)

    stats = rollups.refresh(session, org_id=org_id)
    session.commit()
    assert stats is not None
    assert stats.written > 0
    assert stats.cleared >= 2
    assert rollups.pending(session, org_id=org_id, before=rollups.floor_hour(datetime.now(UTC))) == []
    rolled, raw, source = series(session, org_id, "sentiment_score", "daily", "UTC")
    _assert_series_equal(rolled, raw, "refreshed sentiment")
    assert source != "raw"


def test_reconcile_repairs_rollups_changed_behind_its_back(world: World, session: Session):
    org_id = world.tenant.org_id
    hour = datetime(2026, 5, 12, 14, tzinfo=UTC)
    session.execute(
        text(
            "UPDATE analytics_metrics SET count = count + 5 WHERE org_id = :o AND metric = 'ticket_count'"
            " AND bucket_start >= :lo AND bucket_start < :hi AND grain = 0"
        ),
        {"o": org_id, "lo": hour, "hi": hour + timedelta(days=1)},
    )
    session.commit()
    rolled, raw, _ = series(session, org_id, "ticket_count", "daily", "UTC")
    assert rolled["summary"]["total_count"] > raw["summary"]["total_count"]  # the rollups really are read

    window = {"start": hour - timedelta(days=1), "end": hour + timedelta(days=2)}
    stats = rollups.reconcile(session, org_id=org_id, **window)
    session.commit()
    assert stats.written > 0
    rolled, raw, _ = series(session, org_id, "ticket_count", "daily", "UTC")
    _assert_series_equal(rolled, raw, "reconciled")
    again = rollups.reconcile(session, org_id=org_id, **window)
    session.commit()
    assert (again.written, again.removed) == (0, 0)


def test_api_meta_source_exact_and_approximate_percentiles(world: World, monkeypatch: pytest.MonkeyPatch):
    viewer = world.tenant.viewer
    query = {"start": "2026-03-01", "end": "2026-10-01", "granularity": "weekly"}
    body = viewer.get("/api/v1/analytics/time-series/response_time", query_string=query).get_json()
    assert body["meta"]["source"] == "rollup"
    assert body["meta"]["approximate"] is False
    exact = viewer.get(
        "/api/v1/analytics/time-series/response_time", query_string={**query, "exact": "true"}
    ).get_json()
    assert exact["meta"]["source"] == "raw"
    assert [p["count"] for p in exact["points"]] == [p["count"] for p in body["points"]]

    request = {"metrics": ["response_time", "resolution_time"], "start": "2026-02-01", "end": "2026-11-01"}
    precise = viewer.post("/api/v1/analytics/aggregations", json=request).get_json()
    assert (precise["meta"]["source"], precise["meta"]["approximate"]) == ("raw", False)
    monkeypatch.setitem(world.app.config, "ROLLUP_EXACT_PERCENTILE_MAX", 100)
    sketched = viewer.post("/api/v1/analytics/aggregations", json=request).get_json()
    assert sketched["meta"]["source"] in ("rollup", "mixed")
    assert sketched["meta"]["approximate"] is True
    forced = viewer.post("/api/v1/analytics/aggregations", json={**request, "exact": True}).get_json()
    assert forced["meta"] == {**forced["meta"], "source": "raw", "approximate": False}
    for metric in request["metrics"]:
        a, e = sketched["rows"][0][metric], forced["rows"][0][metric]
        assert a["count"] == e["count"]
        assert (a["min"], a["max"]) == (e["min"], e["max"])
        _close(a["avg"], e["avg"], metric)
        for p in ("p50", "p95", "p99"):
            assert abs(a[p] - e[p]) <= 0.01 * abs(e[p]), (metric, p, a[p], e[p])
        assert e == precise["rows"][0][metric]

    performance = viewer.get("/api/v1/analytics/performance", query_string={"start": "2026-02-01"}).get_json()
    assert performance["meta"]["approximate"] is True
    assert np.isfinite(performance["response_time"]["p99"])
