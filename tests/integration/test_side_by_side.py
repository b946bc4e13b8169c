"""The dashboard's and the performance report's reads side by side, each on a session of its own
(analytics/side_by_side.py), answer exactly what the same reads give one after another on one
session; side sessions carry the caller's statement timeout and read context, and a failure in any
read reaches the caller."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import Tenant, committed_tenant
from tests.integration.test_rollups import _populate
from webapp.analytics import reports, side_by_side, sql
from webapp.analytics.aggregations import AggregationQuery, run_aggregation
from webapp.analytics.provenance import ReadOptions, reading
from webapp.analytics.window import Window
from webapp.core.filters import Filters

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def tenant(base_app: Flask) -> Iterator[Tenant]:
    with committed_tenant(base_app, "Side by side", "Europe/Berlin") as (tenant, org, session):
        _populate(session, org, random.Random(8), 300)
        session.commit()
        yield tenant


def _both(base_app: Flask, compute) -> tuple[object, object]:
    """`compute(session)` on an engine's session (side by side) and on a connection's (in order);
    both runs must also have noted the same provenance (side reads note into the caller's)."""
    engine = base_app.extensions["db_engine"]
    with Session(bind=engine) as session, reading(ReadOptions()) as side_source:
        side = compute(session)
    with engine.connect() as conn, Session(bind=conn) as session, reading(ReadOptions()) as in_order_source:
        in_order = compute(session)
    assert side_source == in_order_source
    return side, in_order


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize(
    ("start", "end"),
    [(datetime(2026, 3, 1), datetime(2026, 4, 15)), (datetime(2026, 10, 20), datetime(2026, 11, 3))],
)
def test_the_dashboard_side_by_side_equals_it_in_order(base_app, tenant, tz, start, end):
    zone = ZoneInfo(tz)
    window = Window(start.replace(tzinfo=zone), end.replace(tzinfo=zone), zone)

    def compute(session: Session):
        return reports.dashboard(
            session, org_id=tenant.org_id, window=window, filters=Filters(), targets={}, now=NOW
        )

    side, in_order = _both(base_app, compute)
    assert side == in_order
    assert side["kpis"]["ticket_count"]["value"] > 0


@pytest.mark.parametrize("group_by", [None, "channel"])
def test_the_performance_report_side_by_side_equals_it_in_order(base_app, tenant, group_by):
    zone = ZoneInfo("Europe/Berlin")
    window = Window(datetime(2026, 2, 1, tzinfo=zone), datetime(2026, 12, 1, tzinfo=zone), zone)

    def compute(session: Session):
        return reports.performance(
            session, org_id=tenant.org_id, window=window, filters=Filters(), now=NOW, group_by=group_by
        )

    side, in_order = _both(base_app, compute)
    assert side == in_order
    assert side["response_time"]["count"] > 0


@pytest.mark.parametrize(("group_by", "granularity"), [((), None), (("channel", "priority"), "daily")])
def test_an_aggregations_metrics_side_by_side_equal_them_in_order(base_app, tenant, group_by, granularity):
    zone = ZoneInfo("America/New_York")
    window = Window(datetime(2026, 3, 1, tzinfo=zone), datetime(2026, 11, 20, tzinfo=zone), zone, granularity)
    query = AggregationQuery.of(
        metrics=["ticket_count", "response_time", "resolution_time", "csat"],
        group_by=group_by,
        window=window,
        filters=Filters(),
        percentiles=[50, 90],
        approximate_above=10,
    )

    def compute(session: Session):
        return run_aggregation(session, org_id=tenant.org_id, query=query)

    side, in_order = _both(base_app, compute)
    assert side == in_order
    assert sum(row["response_time"]["count"] for row in side["rows"]) > 0


def test_side_sessions_carry_the_statement_timeout_and_return_their_connections(base_app):
    engine = base_app.extensions["db_engine"]

    def timeout(session: Session) -> str:
        return session.execute(text("SHOW statement_timeout")).scalar_one()

    def backend(session: Session) -> int:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()

    with Session(bind=engine) as session:
        sql.statement_timeout(session, 4321)
        assert side_by_side.run(session, [timeout, timeout, timeout]) == ["4321ms"] * 3
        pids = side_by_side.run(session, [backend, backend, backend])
    assert len(set(pids)) == 3  # three backends: the reads ran at once, not in turn on one
    assert side_by_side._side_engine(engine).pool.checkedout() == 0


def test_a_failing_side_read_fails_the_answer(base_app):
    engine = base_app.extensions["db_engine"]

    def fails(session: Session) -> None:
        session.execute(text("SELECT 1 / 0"))

    with Session(bind=engine) as session, pytest.raises(Exception, match="division by zero"):
        side_by_side.run(session, [lambda s: 1, fails])


def test_on_a_connection_the_reads_run_in_turn_on_it(base_app):
    engine = base_app.extensions["db_engine"]

    def backend(session: Session) -> int:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()

    with engine.connect() as conn, Session(bind=conn) as session:
        assert len(set(side_by_side.run(session, [backend, backend]))) == 1


def test_with_the_side_pool_busy_the_reads_run_in_turn_without_waiting(base_app):
    # Every side connection is taken (other answers' side reads): this answer's reads neither wait
    # for one nor fail; they run on the caller's session.
    engine = base_app.extensions["db_engine"]
    side = side_by_side._side_engine(engine)

    def backend(session: Session) -> int:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()

    held = [side.connect() for _ in range(side_by_side.SIDE_POOL_SIZE)]
    try:
        with Session(bind=engine) as session:
            started = time.monotonic()
            pids = side_by_side.run(session, [backend, backend, backend])
            assert time.monotonic() - started < 1.0
        assert len(set(pids)) == 1
        held.pop().close()  # one free: the second read goes beside, the third in turn
        with Session(bind=engine) as session:
            first, beside, in_turn = side_by_side.run(session, [backend, backend, backend])
        assert first == in_turn != beside
    finally:
        for connection in held:
            connection.close()
