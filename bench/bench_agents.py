"""The agents report from agent rollups against raw events, at sizes the full rollups benchmark
cannot reach in a short run.

For each size: a fresh database, seed_tickets over one year (COPY) with the tickets spread over
--agents assignees (as bench_rollups seeds them), ANALYZE, one build of the agent rollups only (not
the hourly ones), then the agents report over 90 local days: from the rows (medians from sketches)
cold (the first call on a fresh connection) and warm, with both edges mid-day, and from raw events
(support.agents). The solved counts and rates of both must agree. Results: bench/results/agents.json.
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

from bench.bench_rollups import TZ, _agents, agents_report_timings
from bench.common import print_table, scratch_postgres, write_results
from webapp.analytics import agent_rollups
from webapp.infra.db import make_engine
from webapp.models import Organization
from webapp.tickets import seeding


def _reads(engine: Any, org_id: int, now: datetime, runs: int) -> dict[str, Any]:
    tz = ZoneInfo(TZ)
    end = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)
    with Session(engine) as session:
        out = agents_report_timings(session, org_id, end, runs)
        out["rows"] = session.execute(text("SELECT count(*) FROM agent_rollups")).scalar_one()
    return out


def run_size(tickets: int, runs: int, agents: int) -> dict[str, Any]:
    """Seed `tickets` into a fresh database, build the agent rollups, and time the report."""
    database = f"bench_agents_{tickets}"
    pg, url = scratch_postgres(database)
    try:
        now = datetime.now(UTC)
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            row = conn.execute(
                "INSERT INTO organizations (name, timezone) VALUES ('Bench', %s) RETURNING id", (TZ,)
            ).fetchone()
            assert row is not None
            org_id = int(row[0])
            conn.commit()
            with _agents(agents):
                seeded = seeding.seed_tickets(conn, org_id=org_id, tickets=tickets, seed=1, tz=TZ, now=now)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE tickets")
            conn.execute("VACUUM ANALYZE ticket_events")
        engine = make_engine(url)
        with Session(engine) as session:
            org = session.get(Organization, org_id)
            assert org is not None
            started = time.perf_counter()
            agent_rollups.rebuild(session, org)
            session.commit()
            build_s = time.perf_counter() - started
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE agent_rollups")
        engine.dispose()
        engine = make_engine(url)  # a fresh pool: the first call is a cold one
        reads = _reads(engine, org_id, now, runs)
        engine.dispose()
        return {
            "tickets": tickets,
            "events": seeded.events,
            "seed_s": seeded.seconds,
            "build_s": build_s,
            **reads,
        }
    finally:
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
    args = parser.parse_args()
    results = [run_size(int(size), args.runs, args.agents) for size in args.sizes.split(",") if size]
    print_table(
        "Agents report over 90 days (ms)",
        ["tickets", "agents", "cold", "warm", "mid-day edges", "raw", "rows", "build s"],
        [
            [
                f"{r['tickets']:,}",
                r["agents"],
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
    path = write_results("agents", {"sizes": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
