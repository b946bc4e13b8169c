"""Summed days (metric_days, migration 0025) hold the sum of their hours, answer as raw events do,
and stop being read the moment a change touches their hours: a dirty hour, an import's deltas, a
rollup row rewritten.

Expected day rows are summed here in Python from the hourly cells (rollup_cells decodes sketches on
its own); expected answers are the raw-event reads (rollups off). That a read took its days, and
which, is shown by poisoning the day rows inside a transaction: the answers of the days read move.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import committed_tenant
from tests.integration import rollup_cells
from webapp.analytics import metric_days, queries, rollups
from webapp.analytics.buckets import make_buckets
from webapp.analytics.provenance import ReadOptions, reading
from webapp.models import Organization
from webapp.tickets import seeding
from webapp.tickets.bulk import create_tickets_bulk
from webapp.tickets.writes import create_ticket

ZONE = "Europe/Berlin"
METRICS = ("ticket_count", "response_time", "resolution_time")
# The seed's span covers Berlin's autumn change (a 25-hour day).
DAYS = 70


@pytest.fixture(scope="module")
def org(base_app: Flask) -> Iterator[Organization]:
    with committed_tenant(base_app, "Metric days", ZONE) as (_, org, session):
        raw = session.connection().connection.driver_connection
        seeding.seed_tickets(raw, org_id=org.id, tickets=1500, days=DAYS, seed=5, tz=ZONE)
        session.commit()
        now = datetime.now(UTC)
        rollups.build(session, org_id=org.id, start=now - timedelta(days=DAYS + 2), end=now)
        session.commit()
        yield org


def _sum(session: Session, org: Organization) -> int:
    summed = metric_days.sum_days(session, org_id=org.id, tz_name=org.timezone, now=datetime.now(UTC))
    assert summed is not None
    return summed


def _builds(session: Session, org_id: int) -> list[tuple[datetime, datetime]]:
    return [
        (lo, hi)
        for lo, hi in session.execute(
            text("SELECT day_start, day_end FROM analytics_metric_day_builds WHERE org_id = :o ORDER BY 1"),
            {"o": org_id},
        )
    ]


def _local_midnights(first: datetime, last: datetime) -> list[datetime]:
    """Berlin's midnights from `first`'s date to `last`, in UTC, by plain date arithmetic."""
    tz = ZoneInfo(ZONE)
    day = first.astimezone(tz).date()
    out = []
    while (moment := datetime.combine(day, time(), tz).astimezone(UTC)) <= last:
        out.append(moment)
        day += timedelta(days=1)
    return out


def test_each_summed_day_is_the_sum_of_its_hours(org, real_session):
    assert _sum(real_session, org) >= DAYS - 2
    builds = _builds(real_session, org.id)
    # Every ended local day, from the first rolled hour's, is summed with Berlin's own bounds.
    first = real_session.execute(
        text("SELECT min(bucket_start) FROM analytics_metrics WHERE org_id = :o"), {"o": org.id}
    ).scalar()
    today = _local_midnights(datetime.now(UTC), datetime.now(UTC))[0]
    # The summing starts at the day of the organization's first event, which may be a day before
    # its first rolled hour (a ticket created late in a Berlin evening whose first measured event
    # falls on the next day): consecutive days from there to today, the first rolled hour's among them.
    assert builds[0][0] <= _local_midnights(first, first)[0]
    midnights = _local_midnights(builds[0][0], today)
    assert builds == list(itertools.pairwise(midnights))
    assert {hi - lo for lo, hi in builds} == {timedelta(hours=24), timedelta(hours=25)}
    # Each day row is its hours summed, cell by cell.
    expected: dict[tuple, dict[str, Any]] = {}
    starts = [lo for lo, _ in builds]
    for key, cell in rollup_cells.answered(real_session, org.id).items():
        metric, grain, hour, *dims = key
        at = max((lo for lo in starts if lo <= hour), default=None)
        if at is None or hour >= today:
            continue
        day = expected.setdefault(
            (metric, grain, at, *dims),
            {"count": 0, "sum": None, "min": None, "max": None, "sketch": Counter()},
        )
        day["count"] += cell.count
        if cell.sum is not None:
            day["sum"] = cell.sum + (day["sum"] or 0.0)
        day["min"] = cell.min if day["min"] is None else min(day["min"], cell.min)
        day["max"] = cell.max if day["max"] is None else max(day["max"], cell.max)
        day["sketch"].update(cell.sketch)
    got = rollup_cells.cells(real_session, org.id, table="analytics_metric_days")
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        assert (row.count, row.min, row.max) == (want["count"], want["min"], want["max"]), key
        assert (row.sum is None) == (want["sum"] is None), key
        if row.sum is not None:
            # Sums added in another order: equal to the last bits (a sum near zero, absolutely).
            assert math.isclose(row.sum, want["sum"], rel_tol=1e-12, abs_tol=1e-12), key
        assert row.sketch == want["sketch"], key
        # Folded: one pair per key.
        assert row.pairs == len(row.sketch), key


def _series(session: Session, org_id: int, metric: str, granularity: str, tz: str, filters=None):
    zone = ZoneInfo(tz)
    today = datetime.combine(datetime.now(zone).date(), time(), zone)
    start, end = today - timedelta(days=DAYS - 5), today + timedelta(hours=5)
    buckets = make_buckets(granularity, start, end, zone)
    return queries.time_series(
        session, org_id=org_id, metric=metric, buckets=buckets, start=start, end=end, filters=filters or {}
    )


def _aggregate(session: Session, org_id: int, metric: str, group_by, tz: str, days: int = DAYS - 5):
    zone = ZoneInfo(tz)
    end = datetime.combine(datetime.now(zone).date(), time(), zone)
    return queries.aggregate(
        session,
        org_id=org_id,
        metric=metric,
        start=end - timedelta(days=days),
        end=end,
        filters={},
        group_by=group_by,
        buckets=None,
        percentiles=() if metric == "ticket_count" else (50, 95, 99),
    )


def _close(a: float | None, b: float | None, what: str, rel: float = 1e-9) -> None:
    assert (a is None) == (b is None), what
    if a is not None:
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-9), f"{what}: {a} != {b}"


def _same_series(rolled: dict, raw: dict, what: str) -> None:
    for a, b in zip(rolled["points"], raw["points"], strict=True):
        assert (a["bucket"], a["count"], a["min"], a["max"]) == (
            b["bucket"],
            b["count"],
            b["min"],
            b["max"],
        ), what
        _close(a["value"], b["value"], f"{what} {a['bucket']}")


def _same_cells(rolled: dict, raw: dict, what: str, *, sketches: bool) -> None:
    assert set(rolled) == set(raw), what
    for key, want in raw.items():
        got = rolled[key]
        assert (got["count"], got.get("min"), got.get("max")) == (
            want["count"],
            want.get("min"),
            want.get("max"),
        )
        _close(got.get("avg"), want.get("avg"), f"{what} {key} avg")
        for name in ("p50", "p95", "p99"):
            # Percentiles from merged sketches are within the sketch's 1 % of the exact ones.
            _close(got.get(name), want.get(name), f"{what} {key} {name}", rel=0.01 if sketches else 1e-9)


READS = [
    ("daily", ZONE, None),
    ("weekly", ZONE, {"priority": ["high", "urgent"]}),
    ("monthly", ZONE, {"channel": ["email"], "priority": ["low", "normal"]}),
    # Paris has Berlin's days: they are taken. New York's and Kathmandu's are other days.
    ("daily", "Europe/Paris", {"channel": ["chat", "web"]}),
    ("daily", "America/New_York", None),
    ("daily", "Asia/Kathmandu", None),
    ("hourly", ZONE, None),
]


def _answers(session: Session, org_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with reading(ReadOptions(approximate_above=0)):
        for granularity, tz, filters in READS:
            for metric in METRICS:
                out[f"{metric} {granularity} {tz} {filters}"] = _series(
                    session, org_id, metric, granularity, tz, filters
                )
        for group_by in ((), ("priority",), ("channel", "priority")):
            for metric in METRICS:
                out[f"{metric} by {group_by}"] = _aggregate(session, org_id, metric, group_by, ZONE)
    return out


def _check_against_raw(session: Session, org_id: int) -> dict[str, Any]:
    answers = _answers(session, org_id)
    with reading(ReadOptions(rollups=False)):
        for granularity, tz, filters in READS:
            for metric in METRICS:
                what = f"{metric} {granularity} {tz} {filters}"
                _same_series(answers[what], _series(session, org_id, metric, granularity, tz, filters), what)
        for group_by in ((), ("priority",), ("channel", "priority")):
            for metric in METRICS:
                what = f"{metric} by {group_by}"
                raw = _aggregate(session, org_id, metric, group_by, ZONE)
                _same_cells(answers[what], raw, what, sketches=True)
    return answers


def _poisoned(session: Session, org_id: int) -> dict[str, Any]:
    """The answers with every day row's count raised by 1000 (rolled back after)."""
    with session.begin_nested() as nested:
        session.execute(
            text("UPDATE analytics_metric_days SET count = count + 1000 WHERE org_id = :o"), {"o": org_id}
        )
        answers = _answers(session, org_id)
        nested.rollback()
    return answers


def _moved(before: dict[str, Any], after: dict[str, Any], what: str) -> list[str]:
    """The buckets (series) or groups (aggregations) of `what` whose count changed."""
    a, b = before[what], after[what]
    if "points" in a:
        return [
            p["bucket"] for p, q in zip(a["points"], b["points"], strict=True) if p["count"] != q["count"]
        ]
    return [str(key) for key in a if a[key]["count"] != b[key]["count"]]


def test_reads_take_the_summed_days_and_answer_as_raw_events(org, real_session):
    _sum(real_session, org)
    answers = _check_against_raw(real_session, org.id)
    poisoned = _poisoned(real_session, org.id)
    # Whole local days in one bucket are read from their day rows: every day but today's (still open).
    daily = _moved(answers, poisoned, f"ticket_count daily {ZONE} None")
    assert len(daily) == len(answers[f"ticket_count daily {ZONE} None"]["points"]) - 1
    assert _moved(answers, poisoned, "ticket_count daily Europe/Paris {'channel': ['chat', 'web']}")
    assert _moved(answers, poisoned, "response_time by ('channel', 'priority')")
    assert _moved(
        answers,
        poisoned,
        f"response_time monthly {ZONE} {{'channel': ['email'], 'priority': ['low', 'normal']}}",
    )
    # Other days, and hours, are read from the hours.
    for what in (
        "ticket_count daily America/New_York None",
        "ticket_count daily Asia/Kathmandu None",
        f"ticket_count hourly {ZONE} None",
    ):
        assert _moved(answers, poisoned, what) == [], what


def _day_of(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(ZONE)).date().isoformat()


def test_a_change_to_a_days_hours_reads_it_from_hours_until_summed_again(org, real_session):
    _sum(real_session, org)
    now = datetime.now(UTC)
    written = now - timedelta(days=12)
    imported = now - timedelta(days=20)
    # A write through the domain marks its hour dirty (the refresh is left for later), and an import
    # appends deltas to its hours: both days are read from the hours, and exactly, at once.
    create_ticket(real_session, org, {"created_at": written, "priority": "urgent"}, now=now)
    real_session.commit()
    create_tickets_bulk(
        real_session,
        org,
        [
            {
                "created_at": imported + timedelta(minutes=i),
                "priority": "low",
                "first_response_at": imported + timedelta(minutes=i + 30),
            }
            for i in range(5)
        ],
        now=now,
    )
    real_session.commit()
    assert real_session.execute(
        text("SELECT count(*) FROM analytics_metric_deltas WHERE org_id = :o"), {"o": org.id}
    ).scalar()
    answers = _check_against_raw(real_session, org.id)
    what = f"ticket_count daily {ZONE} None"
    moved = set(_moved(answers, _poisoned(real_session, org.id), what))
    buckets = [p["bucket"][:10] for p in answers[what]["points"]]
    assert {b for b in buckets if b not in {p[:10] for p in moved}} >= {_day_of(written), _day_of(imported)}
    # The dirty day waits for the refresh; the imported day is summed again with its deltas.
    _sum(real_session, org)
    moved = {p[:10] for p in _moved(answers, _poisoned(real_session, org.id), what)}
    assert _day_of(imported) in moved
    assert _day_of(written) not in moved
    rollups.refresh(real_session, org_id=org.id)
    real_session.commit()
    rollups.fold_deltas(real_session, org_id=org.id)
    real_session.commit()
    _sum(real_session, org)
    answers = _check_against_raw(real_session, org.id)
    moved = {p[:10] for p in _moved(answers, _poisoned(real_session, org.id), what)}
    assert {_day_of(imported), _day_of(written)} <= moved
    # What marks are left (folded into ranges) cover only the day not ended yet.
    overlapping = real_session.execute(
        text(
            "SELECT count(*) FROM analytics_metric_day_marks k JOIN analytics_metric_day_builds b"
            " ON b.org_id = k.org_id AND b.day_start < k.hi AND b.day_end > k.lo WHERE k.org_id = :o"
        ),
        {"o": org.id},
    ).scalar()
    assert overlapping == 0


def test_a_change_committed_while_a_day_is_summed_keeps_its_mark(org, real_session, base_app):
    _sum(real_session, org)
    day = _builds(real_session, org.id)[-10]
    real_session.commit()
    # The summing transaction takes its snapshot; a dirty hour of the day commits after it.
    real_session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    real_session.execute(text("SELECT 1 FROM analytics_metric_day_builds LIMIT 1"))
    done = threading.Event()

    def mark() -> None:
        other = base_app.extensions["db_sessionmaker"]()
        other.execute(
            text(
                "INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)"
                " VALUES (:o, 'created', :lo, :hi)"
            ),
            {"o": org.id, "lo": day[0] + timedelta(hours=3), "hi": day[0] + timedelta(hours=4)},
        )
        other.commit()
        other.close()
        done.set()

    thread = threading.Thread(target=mark)
    thread.start()
    assert done.wait(10)
    thread.join()
    metric_days._sum_chunk(real_session, org_id=org.id, days=[day], now=datetime.now(UTC))
    real_session.commit()
    marks = real_session.execute(
        text("SELECT lo, hi FROM analytics_metric_day_marks WHERE org_id = :o"), {"o": org.id}
    ).all()
    assert (day[0] + timedelta(hours=3), day[0] + timedelta(hours=4)) in [tuple(m) for m in marks]
    # The day is not summed again while its hour is dirty; after the refresh it is.
    _sum(real_session, org)
    assert real_session.execute(
        text("SELECT count(*) FROM analytics_metric_day_marks WHERE org_id = :o"), {"o": org.id}
    ).scalar()
    real_session.execute(text("DELETE FROM analytics_rollup_dirty WHERE org_id = :o"), {"o": org.id})
    real_session.commit()
    assert _sum(real_session, org) >= 1
    _check_against_raw(real_session, org.id)


def test_days_not_on_whole_hours_are_never_summed(base_app, real_session):
    with committed_tenant(base_app, "Kolkata days", "Asia/Kolkata") as (_, org, session):
        raw = session.connection().connection.driver_connection
        seeding.seed_tickets(raw, org_id=org.id, tickets=200, days=10, seed=3, tz=org.timezone)
        session.commit()
        now = datetime.now(UTC)
        rollups.build(session, org_id=org.id, start=now - timedelta(days=12), end=now)
        session.commit()
        assert metric_days.sum_days(session, org_id=org.id, tz_name=org.timezone, now=now) == 0
        assert _builds(session, org.id) == []


def test_only_changed_days_are_summed_and_a_new_zone_sums_them_again(base_app, real_session):
    with committed_tenant(base_app, "Sparse days", "America/New_York") as (_, org, session):
        now = datetime.now(UTC)
        for created in (datetime(1950, 6, 1, 15, tzinfo=UTC), now - timedelta(days=10)):
            create_ticket(session, org, {"created_at": created, "priority": "high"}, now=now)
        session.commit()
        rollups.refresh(session, org_id=org.id)
        session.commit()
        # A day in 1950 and one ten days ago: the two local days each UTC day's mark overlaps are
        # summed, not the 27,000 days between them.
        assert metric_days.sum_days(session, org_id=org.id, tz_name=org.timezone, now=now) == 4
        york = _builds(session, org.id)
        assert york[0] == (datetime(1950, 5, 31, 4, tzinfo=UTC), datetime(1950, 6, 1, 4, tzinfo=UTC))
        assert {hi - lo for lo, hi in york} == {timedelta(hours=24)}
        assert metric_days.sum_days(session, org_id=org.id, tz_name=org.timezone, now=now) == 0
        # The zone changes: the same days are summed again with Berlin's bounds.
        session.execute(
            text("UPDATE organizations SET timezone = 'Europe/Berlin' WHERE id = :o"), {"o": org.id}
        )
        session.commit()
        assert metric_days.sum_days(session, org_id=org.id, tz_name="Europe/Berlin", now=now) >= 2
        berlin = _builds(session, org.id)
        # Berlin's days over New York's: from its May 31 (CET) on.
        assert berlin[0][0] == datetime(1950, 5, 30, 23, tzinfo=UTC)
        assert len(berlin) <= 6
        tz = ZoneInfo("Europe/Berlin")
        assert all(
            lo.astimezone(tz).time() == time() and hi.astimezone(tz).time() == time() for lo, hi in berlin
        )
        days = (
            session.execute(
                text("SELECT DISTINCT bucket_start FROM analytics_metric_days WHERE org_id = :o ORDER BY 1"),
                {"o": org.id},
            )
            .scalars()
            .all()
        )
        assert set(days) <= {lo for lo, _ in berlin}
