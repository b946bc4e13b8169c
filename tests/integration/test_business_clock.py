"""Duration metrics on a business clock against an interval walk written here from the contract.

A New York organization (daylight saving on 8 March and 1 November 2026) has a split-shift
schedule: weekdays 09:00-12:00 and 13:00-17:30, Saturday 10:00-14:00, Sunday 01:30-03:30 (which the
spring change cuts to one real hour) and 20:00-24:00, closed on two holidays. Tickets are written
through the domain functions around both changes. Every answer with clock=business (time series,
aggregations with percentiles, performance, exports, live values) must equal the same statistic of
the business hours the test computes itself: for each measurement, the overlap of [created, event)
with the schedule's open spans, each span made from its local wall-clock times with zoneinfo
(fold=0). Rollup-backed answers must equal raw ones; a changed schedule must change the answers.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from flask import Flask
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from tests.conftest import Tenant, _make_tenant, wait_for_job
from webapp.analytics import queries, rollups
from webapp.analytics.clock import Clock
from webapp.analytics.planner import grain_for
from webapp.analytics.provenance import ReadOptions, reading
from webapp.clocks.schedules import create_schedule
from webapp.live.subscriptions import current_values
from webapp.models import Organization
from webapp.tickets import imports
from webapp.tickets.writes import create_ticket, update_ticket

ZONE = ZoneInfo("America/New_York")
SEED = 16
# Local dates of the data: around the spring and the autumn change.
SPRING = (date(2026, 2, 26), date(2026, 3, 20))
AUTUMN = (date(2026, 10, 24), date(2026, 11, 10))
HOLIDAYS = (date(2026, 3, 9), date(2026, 11, 3))
WEEKDAY = [("09:00", "12:00"), ("13:00", "17:30")]
INTERVALS: dict[int, list[tuple[str, str]]] = {
    **dict.fromkeys(range(5), WEEKDAY),
    5: [("10:00", "14:00")],
    6: [("01:30", "03:30"), ("20:00", "24:00")],
}
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "chat", "phone")
TOL = 1e-9


def schedule_body(intervals: dict[int, list[tuple[str, str]]] = INTERVALS) -> dict[str, Any]:
    return {
        "name": "Split shifts",
        "timezone": "America/New_York",
        "intervals": [
            {"day": DAY_NAMES[day], "start": start, "end": end}
            for day, spans in intervals.items()
            for start, end in spans
        ],
        "holidays": [{"date": d.isoformat(), "name": "closed"} for d in HOLIDAYS],
    }


def _wall(day: date, hhmm: str) -> datetime:
    """The UTC instant of a local wall-clock time (24:00: the next local midnight), fold=0."""
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=ZONE).astimezone(UTC)
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=ZONE).astimezone(UTC)


def open_spans(intervals: dict[int, list[tuple[str, str]]] = INTERVALS) -> list[tuple[datetime, datetime]]:
    spans = []
    day = date(2026, 1, 1)
    while day < date(2027, 1, 1):
        if day not in HOLIDAYS:
            for start, end in intervals.get(day.weekday(), []):
                spans.append((_wall(day, start), _wall(day, end)))
        day += timedelta(days=1)
    return spans


SPANS = open_spans()


def business_hours(a: datetime, b: datetime, spans: list[tuple[datetime, datetime]] = SPANS) -> float:
    """Open hours in [a, b): the walk over every open span, overlaps added up."""
    total = 0.0
    for start, end in spans:
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total / 3600


@dataclass(frozen=True)
class Measurement:
    metric: str
    at: datetime  # the event's instant: the bucket it falls in
    since: datetime  # the ticket's creation
    priority: str
    channel: str

    def hours(self, spans: list[tuple[datetime, datetime]] = SPANS) -> float:
        return business_hours(self.since, self.at, spans)


@dataclass
class World:
    tenant: Tenant
    app: Flask
    schedule_id: int
    measurements: list[Measurement]


def _moment(rng: random.Random) -> datetime:
    first, last = rng.choice((SPRING, AUTUMN))
    start = datetime.combine(first, time(), tzinfo=ZONE)
    seconds = (datetime.combine(last, time(), tzinfo=ZONE) - start).total_seconds()
    return (start + timedelta(seconds=rng.uniform(0, seconds))).astimezone(UTC)


def _populate(session: Session, org: Organization, rng: random.Random, count: int) -> list[Measurement]:
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        created = _moment(rng)
        priority, channel = rng.choice(PRIORITIES), rng.choice(CHANNELS)
        fields = {"created_at": created, "priority": priority, "channel": channel, "category": "general"}
        ticket = create_ticket(session, org, fields, now=now).ticket
        at = created
        if rng.random() < 0.9:
            at += timedelta(minutes=rng.uniform(1, 3000))
            update_ticket(session, org, ticket, {"first_response_at": at}, now=at)
            out.append(Measurement("response_time", at, created, priority, channel))
        if rng.random() < 0.7:
            at += timedelta(minutes=rng.uniform(1, 6000))
            update_ticket(session, org, ticket, {"status": "resolved", "resolved_at": at}, now=at)
            out.append(Measurement("resolution_time", at, created, priority, channel))
            if rng.random() < 0.25:  # reopened and solved again: measured again from creation
                at += timedelta(minutes=rng.uniform(30, 2000))
                update_ticket(session, org, ticket, {"status": "open"}, now=at)
                at += timedelta(minutes=rng.uniform(30, 2000))
                update_ticket(session, org, ticket, {"status": "closed", "resolved_at": at}, now=at)
                out.append(Measurement("resolution_time", at, created, priority, channel))
    return out


@pytest.fixture(scope="module")
def world(base_app: Flask) -> Iterator[World]:
    tenant = _make_tenant(base_app, "Business", "America/New_York")
    session = base_app.extensions["db_sessionmaker"]()
    try:
        org = session.get(Organization, tenant.org_id)
        assert org is not None
        schedule = create_schedule(session, tenant.org_id, schedule_body())
        measurements = _populate(session, org, random.Random(SEED), 700)
        session.commit()
        rollups.build(
            session, org_id=tenant.org_id, start=datetime(2026, 2, 20, tzinfo=UTC), end=datetime.now(UTC)
        )
        assert rollups.build_business(session, org_id=tenant.org_id, schedule_id=schedule.id) is not None
        session.commit()
        yield World(tenant, base_app, schedule.id, measurements)
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


def _local_day(instant: datetime) -> date:
    return instant.astimezone(ZONE).date()


def _daily_expected(
    measurements: list[Measurement], metric: str, first: date, last: date
) -> dict[date, list[float]]:
    days: dict[date, list[float]] = {}
    for m in measurements:
        if m.metric == metric and first <= _local_day(m.at) < last:
            days.setdefault(_local_day(m.at), []).append(m.hours())
    return days


def _check_series(body: dict[str, Any], expected: dict[Any, list[float]], key: Any) -> None:
    seen = 0
    for point in body["points"]:
        values = expected.get(key(point["bucket"]), [])
        assert point["count"] == len(values), point["bucket"]
        seen += len(values)
        _close(point["value"], float(np.mean(values)) if values else None, f"avg {point['bucket']}")
        _close(point["min"], min(values) if values else None, f"min {point['bucket']}")
        _close(point["max"], max(values) if values else None, f"max {point['bucket']}")
    everything = [v for values in expected.values() for v in values]
    assert body["summary"]["total_count"] == seen == len(everything)
    _close(body["summary"]["avg"], float(np.mean(everything)), "summary avg")
    _close(body["summary"]["max"], max(everything), "summary max")


@pytest.mark.parametrize("metric", ["response_time", "resolution_time"])
@pytest.mark.parametrize("exact", [False, True])
def test_daily_series_on_the_business_clock(world: World, metric: str, exact: bool):
    first, last = date(2026, 2, 26), date(2026, 3, 25)
    path = (
        f"/api/v1/analytics/time-series/{metric}?granularity=daily&start={first}&end={last}"
        f"&clock=business{'&exact=true' if exact else ''}"
    )
    answer = world.tenant.viewer.get(path)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["clock"] == "business"
    assert body["schedule_id"] == world.schedule_id
    assert body["meta"]["source"] == ("raw" if exact else "rollup")
    expected = _daily_expected(world.measurements, metric, first, last)
    _check_series(body, expected, lambda bucket: datetime.fromisoformat(bucket).date())


def test_hourly_series_across_the_autumn_change(world: World):
    start, end = "2026-10-30T00:00:00-04:00", "2026-11-05T00:00:00-05:00"
    path = (
        "/api/v1/analytics/time-series/resolution_time?granularity=hourly"
        f"&start={start}&end={end}&clock=business"
    )
    body = world.tenant.viewer.get(path).get_json()
    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    hours: dict[datetime, list[float]] = {}
    for m in world.measurements:
        if m.metric == "resolution_time" and lo <= m.at < hi:
            hours.setdefault(m.at.replace(minute=0, second=0, microsecond=0), []).append(m.hours())
    # The local hours of New York start on the UTC hour (whole-hour offsets).
    _check_series(body, hours, lambda bucket: datetime.fromisoformat(bucket).astimezone(UTC))
    assert len(body["points"]) == 24 * 6 + 1  # 1 November has 25 hours


def test_the_calendar_clock_is_unchanged_and_the_default(world: World):
    path = "/api/v1/analytics/time-series/response_time?granularity=weekly&start=2026-02-23&end=2026-03-23"
    default = world.tenant.viewer.get(path).get_json()
    calendar = world.tenant.viewer.get(path + "&clock=calendar").get_json()
    business = world.tenant.viewer.get(path + "&clock=business").get_json()
    assert default["points"] == calendar["points"]
    assert default["clock"] == "calendar"
    measured = [
        m
        for m in world.measurements
        if m.metric == "response_time" and date(2026, 2, 23) <= _local_day(m.at) < date(2026, 3, 23)
    ]
    calendar_avg = float(np.mean([(m.at - m.since).total_seconds() / 3600 for m in measured]))
    _close(calendar["summary"]["avg"], calendar_avg, "calendar avg")
    _close(business["summary"]["avg"], float(np.mean([m.hours() for m in measured])), "business avg")
    assert business["summary"]["avg"] < calendar["summary"]["avg"]
    # A count has no duration: the same on every clock.
    count = "/api/v1/analytics/time-series/ticket_count?granularity=weekly&start=2026-02-23&end=2026-03-23"
    assert (
        world.tenant.viewer.get(count + "&clock=business").get_json()["points"]
        == world.tenant.viewer.get(count).get_json()["points"]
    )


def test_aggregations_with_percentiles_by_priority(world: World):
    body = {
        "metrics": ["response_time", "resolution_time", "ticket_count"],
        "group_by": ["priority"],
        "percentiles": [50, 95, 99],
        "start": "2026-02-20",
        "end": "2026-11-20",
        "clock": "business",
        "schedule_id": world.schedule_id,
    }
    answer = world.tenant.viewer.post("/api/v1/analytics/aggregations", json=body)
    assert answer.status_code == 200, answer.get_json()
    rows = {row["group"]["priority"]: row for row in answer.get_json()["rows"]}
    assert answer.get_json()["clock"] == "business"
    for priority in PRIORITIES:
        for metric in ("response_time", "resolution_time"):
            values = np.array(
                [m.hours() for m in world.measurements if m.metric == metric and m.priority == priority]
            )
            stats = rows[priority][metric]
            assert stats["count"] == len(values)
            _close(stats["avg"], float(values.mean()), f"{priority} {metric} avg")
            for p in (50, 95, 99):
                _close(stats[f"p{p}"], float(np.percentile(values, p)), f"{priority} {metric} p{p}")


def test_sketch_percentiles_from_business_rollups(world: World, session: Session):
    values = np.array([m.hours() for m in world.measurements if m.metric == "resolution_time"])
    with reading(ReadOptions(approximate_above=0)) as provenance:
        stats = queries.measure(
            session,
            org_id=world.tenant.org_id,
            metric="resolution_time",
            start=datetime(2026, 2, 20, tzinfo=UTC),
            end=datetime(2026, 11, 20, tzinfo=UTC),
            filters={},
            percentiles=(50, 95, 99),
            clock=Clock(world.schedule_id),
        )
    assert provenance.approximate
    assert provenance.source == "rollup"
    assert stats["count"] == len(values)
    for p in (50, 95, 99):
        exact = float(np.percentile(values, p))
        assert abs(stats[f"p{p}"] - exact) <= 0.011 * abs(exact), p


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
    for metric in ("response_time", "resolution_time"):
        with reading(ReadOptions()) as provenance:
            rolled = queries.aggregate(session, metric=metric, **read)
        with reading(ReadOptions(rollups=False)):
            raw = queries.aggregate(session, metric=metric, **read)
        # Rollups answer whatever grain keeps the dimensions (the cube keeps status, priority, channel).
        assert provenance.rollup == (grain_for([*read["filters"], *group_by]) is not None)
        assert rolled.keys() == raw.keys()
        for key in raw:
            assert rolled[key]["count"] == raw[key]["count"]
            for stat in ("avg", "min", "max"):
                _close(rolled[key][stat], raw[key][stat], f"{metric} {key} {stat}")


def test_performance_on_the_business_clock(world: World):
    answer = world.tenant.viewer.get(
        "/api/v1/analytics/performance?start=2026-02-20&end=2026-11-20&clock=business"
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["clock"] == "business"
    for metric in ("response_time", "resolution_time"):
        values = np.array([m.hours() for m in world.measurements if m.metric == metric])
        assert body[metric]["count"] == len(values)
        for p in (50, 95, 99):
            _close(body[metric][f"p{p}"], float(np.percentile(values, p)), f"{metric} p{p}")


def test_a_business_hours_export(world: World):
    request = {
        "format": "csv",
        "dataset": "time-series",
        "query": {
            "metric": "response_time",
            "granularity": "daily",
            "start": "2026-03-01",
            "end": "2026-03-15",
            "clock": "business",
        },
    }
    answer = world.tenant.viewer.post("/api/v1/analytics/export?mode=sync", json=request)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    expected = _daily_expected(world.measurements, "response_time", date(2026, 3, 1), date(2026, 3, 15))
    assert len(rows) == 14
    for row in rows:
        values = expected.get(datetime.fromisoformat(row["bucket"]).date(), [])
        assert int(row["count"]) == len(values)
        if values:
            _close(float(row["value"]), float(np.mean(values)), row["bucket"])


def test_live_values_on_the_business_clock(world: World, session: Session):
    now = datetime(2026, 3, 10, 15, tzinfo=UTC)
    values = current_values(
        session,
        org_id=world.tenant.org_id,
        metrics=["response_time"],
        filters={},
        now=now,
        clock=Clock(world.schedule_id),
    )["metrics"]["response_time"]
    expected = [
        m.hours()
        for m in world.measurements
        if m.metric == "response_time" and now - timedelta(hours=24) <= m.at < now
    ]
    assert values["count"] == len(expected) > 0
    _close(values["value"], float(np.mean(expected)), "live avg")


def test_clock_refusals(world: World, make_tenant: Any):
    api = world.tenant.viewer
    series = "/api/v1/analytics/time-series/response_time?start=2026-03-01&end=2026-03-05"
    assert api.get(series + "&clock=sundial").status_code == 400
    refused = api.get(series + f"&clock=calendar&schedule_id={world.schedule_id}")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"]["field"] == "schedule_id"
    other = make_tenant("Other", "Europe/Berlin")
    foreign = other.admin.post("/api/v1/schedules", json=schedule_body()).get_json()["id"]
    for schedule_id in (foreign, 2**70, -1):
        assert api.get(series + f"&clock=business&schedule_id={schedule_id}").status_code == 404
    none = other.viewer.get(series + "&clock=business")
    assert none.status_code == 200  # the other tenant has a (default) schedule now
    lonely = make_tenant("Lonely", "UTC")
    answer = lonely.viewer.get(series + "&clock=business")
    assert answer.status_code == 400
    assert "schedule" in answer.get_json()["error"]["message"]
    body = {"metrics": ["response_time"], "clock": "business", "schedule_id": foreign}
    assert api.post("/api/v1/analytics/aggregations", json=body).status_code == 404
    export = {
        "format": "csv",
        "dataset": "time-series",
        "query": {"metric": "response_time", "clock": "business", "schedule_id": foreign},
    }
    assert api.post("/api/v1/analytics/export", json=export).status_code == 404
    assert lonely.viewer.get("/api/v1/analytics/performance?clock=business").status_code == 400


def test_a_changed_schedule_changes_every_answer(make_tenant: Any, app: Flask, db_session: Session):
    tenant = make_tenant("Changing", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    org = db_session.get(Organization, tenant.org_id)
    assert org is not None
    measurements = _populate(db_session, org, random.Random(3), 60)
    db_session.flush()
    rollups.build(
        db_session, org_id=tenant.org_id, start=datetime(2026, 2, 20, tzinfo=UTC), end=datetime.now(UTC)
    )
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    path = (
        "/api/v1/analytics/time-series/response_time?granularity=monthly"
        "&start=2026-01-01&end=2026-12-01&clock=business"
    )
    before = tenant.viewer.get(path).get_json()
    assert before["meta"]["source"] == "rollup"
    measured = [m for m in measurements if m.metric == "response_time"]
    _close(before["summary"]["avg"], float(np.mean([m.hours() for m in measured])), "before")

    longer = {**INTERVALS, **{day: [("08:00", "18:00")] for day in range(5)}}
    changed = tenant.admin.patch(
        f"/api/v1/schedules/{schedule['id']}", json={"intervals": schedule_body(longer)["intervals"]}
    )
    assert changed.status_code == 200
    after = tenant.viewer.get(path).get_json()
    spans = open_spans(longer)
    expected = float(np.mean([m.hours(spans) for m in measured]))
    assert after["meta"]["cache"] == "miss"
    assert after["meta"]["source"] == "raw"
    _close(after["summary"]["avg"], expected, "after")
    assert after["summary"]["avg"] != before["summary"]["avg"]

    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    with reading(ReadOptions()) as provenance:
        again = queries.measure(
            db_session,
            org_id=tenant.org_id,
            metric="response_time",
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
            filters={},
            clock=Clock(schedule["id"]),
        )
    assert provenance.source == "rollup"
    _close(again["avg"], expected, "rebuilt")


def test_writes_keep_business_rollups_exact(make_tenant: Any, app: Flask, db_session: Session):
    tenant = make_tenant("Writes", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    org = db_session.get(Organization, tenant.org_id)
    assert org is not None
    measurements = _populate(db_session, org, random.Random(5), 40)
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    # More writes after the build: marked dirty, read raw until the calendar refresh rebuilds both.
    measurements += _populate(db_session, org, random.Random(6), 40)
    read = {
        "org_id": tenant.org_id,
        "metric": "resolution_time",
        "start": datetime(2026, 1, 1, tzinfo=UTC),
        "end": datetime(2026, 12, 1, tzinfo=UTC),
        "filters": {},
        "clock": Clock(schedule["id"]),
    }
    expected = [m.hours() for m in measurements if m.metric == "resolution_time"]
    for refresh in (False, True):
        if refresh:
            assert rollups.refresh(db_session, org_id=tenant.org_id) is not None
            assert not db_session.scalar(
                text("SELECT count(*) FROM analytics_rollup_dirty WHERE org_id = :o"), {"o": tenant.org_id}
            )
        with reading(ReadOptions()) as provenance:
            stats = queries.measure(db_session, **read)
        assert stats["count"] == len(expected)
        _close(stats["avg"], float(np.mean(expected)), f"refresh={refresh}")
        _close(stats["max"], max(expected), f"refresh={refresh}")
        assert provenance.rollup == refresh


def test_a_duration_longer_than_the_carried_spans(make_tenant: Any, app: Flask, db_session: Session):
    """A ticket created long before its event: the start of its interval lies before the spans a read
    carries with its statement (clock.LOOKBACK) and is looked up in schedule_spans instead."""
    tenant = make_tenant("Long", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    org = db_session.get(Organization, tenant.org_id)
    assert org is not None
    created, solved = datetime(2025, 1, 6, 15, 7, tzinfo=UTC), datetime(2026, 3, 10, 19, 45, 30, tzinfo=UTC)
    ticket = create_ticket(db_session, org, {"created_at": created, "category": "old"}, now=solved).ticket
    update_ticket(db_session, org, ticket, {"status": "resolved", "resolved_at": solved}, now=solved)
    spans = [
        (_wall(day, start), _wall(day, end))
        for day in (date(2025, 1, 1) + timedelta(days=n) for n in range(365))
        if day not in HOLIDAYS
        for start, end in INTERVALS.get(day.weekday(), [])
    ]
    expected = business_hours(created, solved, spans + SPANS)
    read = {
        "org_id": tenant.org_id,
        "metric": "resolution_time",
        "start": datetime(2026, 3, 1, tzinfo=UTC),
        "end": datetime(2026, 4, 1, tzinfo=UTC),
        "filters": {},
        "clock": Clock(schedule["id"]),
    }
    with reading(ReadOptions(rollups=False)):
        raw = queries.measure(db_session, **read)
    rollups.refresh(db_session, org_id=tenant.org_id)
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    with reading(ReadOptions()) as provenance:
        rolled = queries.measure(db_session, **read)
    assert provenance.source == "rollup"
    assert raw["count"] == rolled["count"] == 1
    _close(raw["avg"], expected, "raw")
    _close(rolled["avg"], expected, "rolled")


@pytest.mark.parametrize("end", ["2026-03-03", "2026-03-04T10:00:00-05:00", "2026-03-05", "2026-04-01"])
def test_a_first_reply_after_the_range_is_measured_whole(make_tenant: Any, end: str):
    """The agents report counts a ticket solved in the range with its first reply from creation to
    the first response, on the clock, wherever the range ends: a reply after `end` lies past the
    spans the read carries and is measured from schedule_spans."""
    tenant = make_tenant("Late reply", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    created = datetime(2026, 3, 2, 9, 0, tzinfo=ZONE)  # a Monday, as the office opens
    replied = datetime(2026, 3, 4, 9, 30, tzinfo=ZONE)  # Wednesday
    body = {
        "subject": "late",
        "assigned_to": "zed",
        "status": "resolved",
        "created_at": created.isoformat(),
        "resolved_at": (created + timedelta(hours=2)).isoformat(),
        "first_response_at": replied.isoformat(),
    }
    assert tenant.admin.post("/api/v1/tickets", json=body).status_code == 201
    answer = tenant.admin.get(
        "/api/v1/analytics/agents",
        query_string={
            "start": "2026-03-02",
            "end": end,
            "min_tickets": 1,
            "clock": "business",
            "schedule_id": schedule["id"],
        },
    )
    assert answer.status_code == 200, answer.get_json()
    (row,) = answer.get_json()["agents"]
    _close(row["first_reply_p50"], business_hours(created, replied), f"first reply, end {end}")
    _close(row["resolution_p50"], business_hours(created, created + timedelta(hours=2)), "resolution")


@pytest.mark.worker
def test_an_aggregation_job_keeps_its_clock(world: World, celery_worker: Any):
    body = {
        "metrics": ["resolution_time"],
        "group_by": ["channel"],
        "granularity": "weekly",
        "start": "2026-02-23",
        "end": "2026-03-23",
        "clock": "business",
    }
    sync = world.tenant.viewer.post("/api/v1/analytics/aggregations", json=body).get_json()
    accepted = world.tenant.viewer.post("/api/v1/analytics/aggregations", json={**body, "async": True})
    assert accepted.status_code == 202, accepted.get_json()
    done = wait_for_job(world.tenant.viewer, accepted.get_json()["job_id"], timeout=60)
    assert done["state"] == "succeeded", done
    assert done["result"]["rows"] == sync["rows"]
    assert done["result"]["clock"] == "business"
    calendar = world.tenant.viewer.post("/api/v1/analytics/aggregations", json={**body, "clock": "calendar"})
    assert calendar.get_json()["rows"] != sync["rows"]


def test_an_import_adds_its_events_to_current_business_rollups(
    make_tenant: Any, app: Flask, db_session: Session
):
    tenant = make_tenant("Imported", "America/New_York")
    schedule = tenant.admin.post("/api/v1/schedules", json=schedule_body()).get_json()
    org = db_session.get(Organization, tenant.org_id)
    assert org is not None
    measurements = _populate(db_session, org, random.Random(8), 30)
    rollups.refresh(db_session, org_id=tenant.org_id)
    rollups.build_business(db_session, org_id=tenant.org_id, schedule_id=schedule["id"])
    rng = random.Random(9)
    rows = []
    for _ in range(60):
        created = _moment(rng)
        answered = created + timedelta(minutes=rng.uniform(1, 2000))
        solved = answered + timedelta(minutes=rng.uniform(1, 5000))
        rows.append(
            {
                "subject": "imported",
                "status": "resolved",
                "priority": rng.choice(PRIORITIES),
                "channel": rng.choice(CHANNELS),
                "category": "general",
                "created_at": created.isoformat(),
                "first_response_at": answered.isoformat(),
                "resolved_at": solved.isoformat(),
            }
        )
        measurements.append(Measurement("response_time", answered, created, "", ""))
        measurements.append(Measurement("resolution_time", solved, created, "", ""))
    report, _, _ = imports.import_rows(db_session, org, rows)
    assert report.imported == len(rows)
    assert not db_session.scalar(
        text(
            "SELECT count(*) FROM analytics_rollup_dirty"
            " WHERE org_id = :o AND hi <= now() - interval '1 hour'"
        ),
        {"o": tenant.org_id},
    )
    for metric in ("response_time", "resolution_time"):
        expected = [m.hours() for m in measurements if m.metric == metric]
        with reading(ReadOptions()) as provenance:
            stats = queries.measure(
                db_session,
                org_id=tenant.org_id,
                metric=metric,
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime(2026, 12, 1, tzinfo=UTC),
                filters={},
                percentiles=(50,),
                options=ReadOptions(approximate_above=0),
                clock=Clock(schedule["id"]),
            )
        assert provenance.source == "rollup"
        assert stats["count"] == len(expected)
        _close(stats["avg"], float(np.mean(expected)), metric)
        _close(stats["min"], min(expected), metric)
        assert abs(stats["p50"] - float(np.percentile(expected, 50))) <= 0.011 * float(
            np.percentile(expected, 50)
        )
