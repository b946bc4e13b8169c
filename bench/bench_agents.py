"""The agents report and the backlog at sizes the full rollups benchmark cannot reach in a short run.

For each size: a fresh database, seed_tickets over one year (COPY) with the tickets spread over
--agents assignees (as bench_rollups seeds them), ANALYZE, one build of the agent rollups and of
the hourly rollups of the two event types the backlog and ticket_count read (created, backlog; not
the others), then:
- the agents report over 90 local days: from the rows (medians from sketches) once right after the
  server started ("server cold": pages from the disk cache), then cold (the first call on a new
  connection to the running server) and warm, with both edges mid-day, and from raw events
  (support.agents); the solved counts and rates of both must agree;
- a one-year daily backlog series against the same ticket_count read (the issue's "within 2x"), the
  backlog checked point by point against raw events up to --check-max tickets.
`--keep` leaves the seeded database in place (instance/bench/postgres-bench_agents_<size>) and
reuses it on the next run, so a large size is seeded once and measured on a quiet machine later.
Results: bench/results/agents.json.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.bench_rollups import TZ, _median_ms, _series, agents_report_timings, seed_year
from bench.common import print_table, scratch_postgres, settle, write_results
from webapp.analytics import agent_report, agent_rollups, rollups
from webapp.analytics.buckets import make_buckets
from webapp.analytics.provenance import ReadOptions
from webapp.clocks.first_contract import targets_for
from webapp.clocks.policy import policy_for
from webapp.infra.engines import make_engine
from webapp.models import Organization


def _end(now: datetime) -> datetime:
    tz = ZoneInfo(TZ)
    return datetime.combine(now.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)


def _reads(engine: Any, org_id: int, now: datetime, runs: int) -> dict[str, Any]:
    with Session(engine) as session:
        out = agents_report_timings(session, org_id, _end(now), runs)
        out["rows"] = session.execute(text("SELECT count(*) FROM agent_rollups")).scalar_one()
    return out


def _server_cold(engine: Any, org_id: int, now: datetime) -> float:
    """The agents report's first call after the server started, in ms."""
    end = _end(now)
    with Session(engine) as session:
        started = time.perf_counter()
        agent_report.agents(
            session,
            org_id=org_id,
            start=end - timedelta(days=90),
            end=end,
            filters={},
            targets=targets_for(None),
            policy=policy_for(session, org_id),
            now=datetime.now(UTC),
            min_tickets=5,
            approximate_above=0,
        )
        return (time.perf_counter() - started) * 1000


def _backlog_reads(engine: Any, org_id: int, now: datetime, runs: int, check: bool) -> dict[str, Any]:
    """One-year daily backlog and ticket_count series from rollups (median of `runs` after a warm-up),
    the backlog's first call on a fresh connection, and, if `check`, the backlog against raw events."""
    end = _end(now)
    year = make_buckets("daily", end - timedelta(days=365), end, ZoneInfo(TZ))
    out: dict[str, Any] = {}
    with Session(engine) as session:
        started = time.perf_counter()
        rolled = _series(session, org_id, "backlog", year, ReadOptions())
        out["backlog cold"] = (time.perf_counter() - started) * 1000
        for metric in ("ticket_count", "backlog"):
            out[f"1y daily {metric}"] = _median_ms(
                lambda m=metric: _series(session, org_id, m, year, ReadOptions()), runs
            )
        out["backlog / ticket_count"] = out["1y daily backlog"] / out["1y daily ticket_count"]
        out["backlog checked"] = check
        if check:
            raw = _series(session, org_id, "backlog", year, ReadOptions(rollups=False))
            assert [p["value"] for p in rolled["points"]] == [p["value"] for p in raw["points"]]
    return out


def _seed(url: str, tickets: int, agents: int) -> tuple[int, datetime, dict[str, float]]:
    """Seed, ANALYZE and build the agent rollups and the created/backlog hourly rollups; the
    organization, the seed's `now` and the setup's counts and seconds (kept in bench_meta)."""
    now = datetime.now(UTC)
    setup: dict[str, float] = {}
    org_id, seeded, _ = seed_year(url, tickets, now, agents)
    setup["events"], setup["seed_s"] = seeded.events, seeded.seconds
    engine = make_engine(url)
    with Session(engine) as session:
        org = session.get(Organization, org_id)
        assert org is not None
        started = time.perf_counter()
        agent_rollups.rebuild(session, org)
        session.commit()
        setup["build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        rollups.build(
            session,
            org_id=org_id,
            start=now - timedelta(days=367),
            end=now,
            event_types=("created", "backlog"),
        )
        session.commit()
        setup["hourly_build_s"] = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        settle(conn, "agent_rollups", "analytics_metrics")
        conn.execute("CREATE TABLE bench_meta (org_id int, now timestamptz, setup jsonb)")
        conn.execute(
            "INSERT INTO bench_meta VALUES (%s, %s, %s)", (org_id, now, psycopg.types.json.Jsonb(setup))
        )
    return org_id, now, setup


def _seeded(url: str) -> tuple[int, datetime, dict[str, float]] | None:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        if conn.execute("SELECT to_regclass('bench_meta')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT org_id, now, setup FROM bench_meta").fetchone()
        return None if row is None else (int(row[0]), row[1], dict(row[2]))


def run_size(tickets: int, runs: int, agents: int, *, keep: bool = False, check_max: int) -> dict[str, Any]:
    """Seed `tickets` into a fresh database (or reuse the kept one), build, and time the reads."""
    database = f"bench_agents_{tickets}"
    pg, url = scratch_postgres(database, reuse=keep)
    try:
        kept = _seeded(url) if keep else None
        org_id, now, setup = kept or _seed(url, tickets, agents)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            settle(conn, "agent_rollups", "analytics_metrics")
        # The first report after the server started reads its pages from the disk cache: timed
        # apart ("server cold"). The report's "cold" is then the first call on a new connection to
        # the running server (nothing of it cached in the connection; the platform's answer cache
        # plays no part here), and "warm" the median of the calls after it.
        engine = make_engine(url)
        server_cold = _server_cold(engine, org_id, now)
        engine.dispose()
        engine = make_engine(url)
        reads = {**_reads(engine, org_id, now, runs), "server cold": server_cold}
        engine.dispose()
        engine = make_engine(url)
        backlog = _backlog_reads(engine, org_id, now, runs, check=tickets <= check_max)
        engine.dispose()
        return {"tickets": tickets, "reused": kept is not None, **setup, **reads, **backlog}
    finally:
        if not keep:
            with psycopg.connect(
                f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000", help="comma-separated ticket counts")
    parser.add_argument("--agents", type=int, default=200, help="assignees the tickets are spread over")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per read (median)")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases and reuse them")
    parser.add_argument(
        "--check-max", type=int, default=2_000_000, help="check the backlog against raw up to this size"
    )
    args = parser.parse_args()
    results = [
        run_size(int(size), args.runs, args.agents, keep=args.keep, check_max=args.check_max)
        for size in args.sizes.split(",")
        if size
    ]
    print_table(
        "Agents report over 90 days (ms)",
        ["tickets", "agents", "server cold", "cold", "warm", "mid-day edges", "raw", "rows", "build s"],
        [
            [
                f"{r['tickets']:,}",
                r["agents"],
                r["server cold"],
                r["cold"],
                r["warm"],
                r["mid-day edges"],
                r["raw"],
                r["rows"],
                r["build_s"],
            ]
            for r in results
        ],
    )
    print_table(
        "One-year daily series from rollups (ms)",
        ["tickets", "ticket_count", "backlog", "ratio", "backlog cold", "checked", "hourly build s"],
        [
            [
                f"{r['tickets']:,}",
                r["1y daily ticket_count"],
                r["1y daily backlog"],
                r["backlog / ticket_count"],
                r["backlog cold"],
                "yes" if r["backlog checked"] else "no",
                r["hourly_build_s"],
            ]
            for r in results
        ],
    )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"\nbacklog at {last['tickets']:,} over {first['tickets']:,}: "
            f"{last['1y daily backlog'] / first['1y daily backlog']:.2f}x"
        )
    path = write_results("agents", {"sizes": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
