"""Business-hours reads against the same calendar-hours reads, at 1M tickets.

A fresh database, seed_tickets over one year (COPY, Europe/Berlin), a split-shift schedule with
holidays in the same zone, one calendar rollup build and one business-hours build of the schedule,
VACUUM ANALYZE until every page is all-visible. Then each read twice, clock=calendar and
clock=business (the schedule), median of --runs runs after one warm-up: one-year daily and 90-day
hourly series of response and resolution time and requester wait (rollups plus the raw tail), and
p50/p95/p99 of each over the year (merged sketches above ROLLUP_EXACT_PERCENTILE_MAX, as the API
answers them) and over 30 days (exact, percentile_cont over raw events). The business rollup answers
are checked against raw business answers. Target: every business read within 1.5x of the calendar
one. `--keep` leaves the seeded database in place and reuses it on the next run (seed and build
once, measure on a quiet machine later). Results: bench/results/business_<tickets>.json.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.bench_rollups import TZ, seed_year
from bench.common import print_table, scratch_postgres, settle, write_results
from webapp.analytics import queries, rollups
from webapp.analytics.buckets import make_buckets
from webapp.analytics.clock import CALENDAR, Clock
from webapp.analytics.provenance import ReadOptions, reading
from webapp.clocks.schedules import create_schedule
from webapp.config import from_environment
from webapp.infra.engines import make_engine

PERCENTILES = (50, 95, 99)
# Durations ending at their event, and a time in statuses (the solve's spans).
METRICS = ("response_time", "resolution_time", "requester_wait_time")
TARGET = 1.5
SCHEDULE = {
    "name": "Split shifts",
    "timezone": TZ,
    "intervals": [
        *({"day": d, "start": "08:00", "end": "12:30"} for d in ("mon", "tue", "wed", "thu", "fri")),
        *({"day": d, "start": "13:30", "end": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")),
        {"day": "sat", "start": "10:00", "end": "14:00"},
    ],
    "holidays": [
        {"date": d, "name": "closed"}
        for d in (
            "2025-12-25",
            "2025-12-26",
            "2026-01-01",
            "2026-04-03",
            "2026-04-06",
            "2026-05-01",
            "2026-12-25",
        )
    ],
}


def _median_ms(run: Callable[[], Any], runs: int) -> float:
    run()  # warm-up: the buffer cache, not the first-call overheads, is what a busy server has
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _series(
    session: Session, org_id: int, metric: str, buckets: Any, clock: Clock, options: ReadOptions
) -> Any:
    with reading(options):
        return queries.time_series(
            session,
            org_id=org_id,
            metric=metric,
            buckets=buckets,
            start=buckets.bounds[0],
            end=buckets.bounds[-1],
            filters={},
            clock=clock,
        )


def _measure(
    session: Session,
    org_id: int,
    metric: str,
    start: datetime,
    end: datetime,
    clock: Clock,
    options: ReadOptions,
) -> dict[str, Any]:
    return queries.measure(
        session,
        org_id=org_id,
        metric=metric,
        start=start,
        end=end,
        filters={},
        percentiles=PERCENTILES,
        options=options,
        clock=clock,
    )


def _same_series(rolled: dict[str, Any], raw: dict[str, Any]) -> bool:
    for a, b in zip(rolled["points"], raw["points"], strict=True):
        if a["count"] != b["count"]:
            return False
        if a["value"] is not None and not math.isclose(a["value"], b["value"], rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def _reads(
    session: Session, org_id: int, business: Clock, now: datetime, runs: int
) -> dict[str, dict[str, Any]]:
    tz = ZoneInfo(TZ)
    end = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)
    approximate = ReadOptions(approximate_above=from_environment()["ROLLUP_EXACT_PERCENTILE_MAX"])
    out: dict[str, dict[str, Any]] = {}
    for name, (granularity, days) in {"1y daily": ("daily", 365), "90d hourly": ("hourly", 90)}.items():
        buckets = make_buckets(granularity, end - timedelta(days=days), end, tz)
        for metric in METRICS:
            timings = {
                clock_name: _median_ms(
                    partial(_series, session, org_id, metric, buckets, clock, ReadOptions()), runs
                )
                for clock_name, clock in (("calendar", CALENDAR), ("business", business))
            }
            rolled = _series(session, org_id, metric, buckets, business, ReadOptions())
            raw = _series(session, org_id, metric, buckets, business, ReadOptions(rollups=False))
            out[f"{name} series {metric}"] = {**timings, "rollup_equals_raw": _same_series(rolled, raw)}
    for name, days, options in (("1y p50/p95/p99", 365, approximate), ("30d p50/p95/p99", 30, approximate)):
        start = now - timedelta(days=days)
        for metric in METRICS:
            timings = {
                clock_name: _median_ms(
                    partial(_measure, session, org_id, metric, start, now, clock, options), runs
                )
                for clock_name, clock in (("calendar", CALENDAR), ("business", business))
            }
            with reading(options) as provenance:
                stats = _measure(session, org_id, metric, start, now, business, options)
            out[f"{name} {metric}"] = {
                **timings,
                "count": stats["count"],
                "approximate": provenance.approximate,
            }
    return out


def _setup(url: str, tickets: int) -> tuple[int, int, datetime, dict[str, Any]]:
    """Seed, build both rollups and VACUUM ANALYZE: the organization, the schedule, the seed's `now`
    and the setup's counts and seconds (kept in bench_meta for --keep)."""
    now = datetime.now(UTC)
    org_id, seeded, _ = seed_year(url, tickets, now)
    engine = make_engine(url)
    with Session(engine) as session:
        schedule_id = create_schedule(session, org_id, SCHEDULE).id
        session.commit()
        started = time.perf_counter()
        rollups.build(session, org_id=org_id, start=now - timedelta(days=366), end=now)
        session.commit()
        calendar_build_s = time.perf_counter() - started
        started = time.perf_counter()
        written = rollups.build_business(session, org_id=org_id, schedule_id=schedule_id, now=now)
        session.commit()
        business_build_s = time.perf_counter() - started
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        settle(conn, "analytics_metrics", "analytics_business_metrics", "analytics_business_values")
    with Session(engine) as session:
        rows = session.execute(
            text(
                "SELECT (SELECT count(*) FROM analytics_metrics) AS calendar,"
                " (SELECT count(*) FROM analytics_business_metrics) AS business,"
                " pg_total_relation_size('analytics_business_metrics') AS business_bytes,"
                " (SELECT count(*) FROM analytics_business_values) AS values,"
                " pg_total_relation_size('analytics_business_values') AS values_bytes"
            )
        ).one()
    engine.dispose()
    setup = {
        "events": seeded.events,
        "seed_s": seeded.seconds,
        "calendar_build_s": calendar_build_s,
        "business_build_s": business_build_s,
        "calendar_rollup_rows": int(rows.calendar),
        "business_rollup_rows": int(rows.business),
        "business_rows_written": written,
        "business_rollup_bytes": int(rows.business_bytes),
        "business_values": int(rows.values),
        "business_values_bytes": int(rows.values_bytes),
    }
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_meta (org_id int, schedule_id int, now timestamptz, setup jsonb)")
        conn.execute(
            "INSERT INTO bench_meta VALUES (%s, %s, %s, %s)",
            (org_id, schedule_id, now, psycopg.types.json.Jsonb(setup)),
        )
    return org_id, schedule_id, now, setup


def _kept(url: str) -> tuple[int, int, datetime, dict[str, Any]] | None:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        if conn.execute("SELECT to_regclass('bench_meta')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT org_id, schedule_id, now, setup FROM bench_meta").fetchone()
        return None if row is None else (int(row[0]), int(row[1]), row[2], dict(row[3]))


def run(tickets: int, runs: int, *, keep: bool = False) -> dict[str, Any]:
    """Seed `tickets` and build both rollups (or reuse the kept database), and time each read on both
    clocks."""
    database = f"bench_business_{tickets}"
    pg, url = scratch_postgres(database, reuse=keep)
    try:
        kept = _kept(url) if keep else None
        org_id, schedule_id, now, setup = kept or _setup(url, tickets)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            settle(conn, "analytics_metrics", "analytics_business_metrics", "analytics_business_values")
        engine = make_engine(url)
        with Session(engine) as session:
            reads = _reads(session, org_id, Clock(schedule_id), now, runs)
        engine.dispose()
        return {"tickets": tickets, "reused": kept is not None, **setup, "reads_ms": reads}
    finally:
        if not keep:
            with psycopg.connect(
                f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1_000_000, help="tickets over one year (default 1M)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per read (median)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded database and reuse it (seed once, measure later)"
    )
    args = parser.parse_args()
    print(f"seeding {args.tickets:,} tickets and building both rollups ...", flush=True)
    result = run(args.tickets, args.runs, keep=args.keep)
    rows = []
    for name, timing in result["reads_ms"].items():
        ratio = timing["business"] / timing["calendar"]
        note = "rollup == raw" if timing.get("rollup_equals_raw") else ""
        if "count" in timing:
            note = f"{timing['count']:,} values, {'sketches' if timing['approximate'] else 'exact'}"
        rows.append(
            [name, timing["calendar"], timing["business"], ratio, "pass" if ratio <= TARGET else "over", note]
        )
    print_table(
        f"Reads at {result['tickets']:,} tickets (median ms)",
        ["read", "calendar", "business", "ratio", f"<= {TARGET}x", "note"],
        rows,
    )
    print_table(
        "Setup",
        [
            "tickets",
            "events",
            "seed s",
            "calendar build s",
            "business build s",
            "calendar rows",
            "business rows",
            "business MB",
            "values",
            "values MB",
        ],
        [
            [
                result["tickets"],
                result["events"],
                result["seed_s"],
                result["calendar_build_s"],
                result["business_build_s"],
                result["calendar_rollup_rows"],
                result["business_rollup_rows"],
                result["business_rollup_bytes"] / 2**20,
                result["business_values"],
                result["business_values_bytes"] / 2**20,
            ]
        ],
    )
    path = write_results(f"business_{result['tickets']}", result)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
