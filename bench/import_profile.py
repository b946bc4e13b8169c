"""Where one import's seconds go: Python phases, each SQL statement, and the server's CPU time.

Not a benchmark of the suite (`python -m bench` runs only bench_* modules): a profile of the import
path in this process against a scratch PostgreSQL. An organization (Europe/Berlin) gets --runs
imports of --batch back-filled tickets (bench_ingest's rows), one after another, each committed;
every import prints its total, the server CPU its backend spent (from /proc, so a busy machine
inflates the wall times far more than this), the time of each phase (checks, plans, COPY
formatting, waiting for the writer thread, each rollup merge) and of each statement (the writer
thread's COPY and INSERT ... SELECT per table included). --schedule adds a business-hours schedule
with its rollups built, and agent rollups, so their merges run too. --explain runs the rollup
statements under EXPLAIN (ANALYZE, BUFFERS) and prints the plans of the last import.

    python -m bench.import_profile [--runs 3] [--batch 10000] [--schedule] [--explain]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from bench.bench_ingest import tickets
from bench.common import scratch_postgres
from webapp.analytics import agent_rollups, business_rollups, rollups
from webapp.infra.engines import make_engine
from webapp.models import Organization
from webapp.tickets import bulk_writer, imports

Times = dict[str, float]


def _label(sql: str) -> str:
    return " ".join(sql.split())[:100]


class Recorder:
    """Seconds per phase and per statement of the import running now, and plans when asked."""

    def __init__(self, explain: bool) -> None:
        self.explain = explain
        self.phases: Times = defaultdict(float)
        self.statements: Times = defaultdict(float)
        self.plans: list[tuple[str, str]] = []

    def clear(self) -> None:
        self.phases.clear()
        self.statements.clear()
        self.plans.clear()

    def listen(self, engine: Engine) -> None:
        """Time every statement the session runs; EXPLAIN the long data-changing ones if asked."""

        @event.listens_for(engine, "before_cursor_execute", retval=True)
        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> Any:
            conn.info["started"] = time.perf_counter()
            if self.explain and len(statement) > 400 and not statement.lstrip().upper().startswith("SELECT"):
                conn.info["explained"] = True
                statement = "EXPLAIN (ANALYZE, BUFFERS) " + statement
            return statement, parameters

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            self.statements[_label(statement)] += time.perf_counter() - conn.info["started"]
            if conn.info.pop("explained", False):
                self.plans.append((_label(statement), "\n".join(row[0] for row in cursor.fetchall())))

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        """Count the time in `owner.name` (a function or method) as `phase`."""
        original: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.phases[phase] += time.perf_counter() - started

        setattr(owner, name, timed)

    def time_writer_thread(self) -> None:
        """The writer thread's statements run on the raw connection: time its COPY and INSERT apart."""

        def move_in(cur: Any, route: Any, first: int, data: bytes) -> None:
            started = time.perf_counter()
            columns = ", ".join(route.staged_columns)
            with cur.copy(f"COPY {route.staged} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(data)
            self.statements[f"[writer thread] COPY {route.staged}"] += time.perf_counter() - started
            started = time.perf_counter()
            names = ", ".join(route.columns)
            cur.execute(
                f"INSERT INTO {route.table} ({names}) SELECT {names} FROM {route.staged}"
                f" WHERE {route.number} >= %s ORDER BY {route.number}",
                (first,),
            )
            self.statements[f"[writer thread] INSERT INTO {route.table}"] += time.perf_counter() - started

        bulk_writer._move_in = move_in  # type: ignore[assignment]
        self.wrap(bulk_writer.BulkWriter, "_write", "[writer thread] a chunk, history tables included")


@contextmanager
def backend_cpu(session: Session) -> Iterator[Callable[[], float]]:
    """The CPU seconds (user + system) the session's server process spent inside the block."""
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    tick = os.sysconf("SC_CLK_TCK")

    def now() -> float:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    started = now()
    spent: list[float] = []
    yield lambda: spent[0]
    spent.append(now() - started)


def _prepare(session: Session, schedule: bool) -> int:
    org = Organization(name="Profile", timezone="Europe/Berlin")
    session.add(org)
    session.commit()
    if schedule:
        from webapp.clocks.schedules import create_schedule

        days = ("mon", "tue", "wed", "thu", "fri")
        body = {
            "name": "Office",
            "timezone": "Europe/Berlin",
            "intervals": [{"day": day, "start": "09:00", "end": "17:00"} for day in days],
        }
        created = create_schedule(session, org.id, body)
        session.commit()
        rollups.build_business(session, org_id=org.id, schedule_id=created.id)
        agent_rollups.rebuild(session, org)
        session.commit()
    return org.id


def _print(rows: Times, prefix: str) -> None:
    for name, seconds in sorted(rows.items(), key=lambda item: -item[1]):
        if seconds >= 0.0005:
            print(f"  {seconds:7.3f}s  {prefix}{name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--schedule", action="store_true", help="a business schedule and agent rollups too")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) the merges")
    args = parser.parse_args()

    recorder = Recorder(args.explain)
    recorder.wrap(imports, "validate_row", "validate rows (pydantic)")
    recorder.wrap(imports, "plan_ticket", "plan tickets")
    recorder.wrap(bulk_writer.BulkWriter, "add", "format COPY data (caller's thread)")
    recorder.wrap(bulk_writer.BulkWriter, "_drain", "wait for the writer thread after the last row")
    recorder.wrap(bulk_writer.rollups, "merge_new_events", "rollups.merge_new_events (business included)")
    recorder.wrap(rollups.business_rollups, "merge_new_events", "business_rollups.merge_new_events")
    recorder.wrap(bulk_writer.agent_rollups, "add_tickets", "agent_rollups.add_tickets")
    recorder.wrap(business_rollups, "current_schedules", "business_rollups.current_schedules")
    recorder.time_writer_thread()

    pg, url = scratch_postgres("import_profile")
    engine = make_engine(url)
    try:
        recorder.listen(engine)
        with Session(engine) as session:
            org_id = _prepare(session, args.schedule)
        rng = random.Random(0)
        now = datetime.now(UTC)
        for run in range(args.runs):
            rows = tickets(rng, args.batch, args.days, now)
            recorder.clear()
            with Session(engine) as session, backend_cpu(session) as cpu:
                org = session.get(Organization, org_id)
                assert org is not None
                started = time.perf_counter()
                report, _, _ = imports.import_rows(session, org, rows, now=now)
                written = time.perf_counter()
                session.commit()
                done = time.perf_counter()
            print(
                f"\nimport {run + 1}: {report.imported:,} tickets, {report.events:,} events in"
                f" {done - started:.3f}s ({report.imported / (done - started):,.0f} tickets/s;"
                f" commit {done - written:.3f}s); server CPU {cpu():.2f}s"
            )
            _print(recorder.phases, "")
            _print(recorder.statements, "SQL ")
        with engine.connect() as conn:
            for table in ("analytics_metrics", "analytics_metric_deltas"):
                grains = conn.execute(text(f"SELECT grain, count(*) FROM {table} GROUP BY 1 ORDER BY 1"))
                print(f"\n{table} rows per grain:", ", ".join(f"{g}: {n:,}" for g, n in grains))
        for name, plan in recorder.plans:
            print(f"\n--- {name}\n{plan}")
    finally:
        engine.dispose()
        pg.stop()


if __name__ == "__main__":
    main()
