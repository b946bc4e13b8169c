"""Cold reads over HTTP against DuckDB on the same tickets: each question of an endpoint, timed and compared.

One organization (Europe/Berlin) gets --tickets synthetic tickets over a year from the project's own
seeding, its rollups built as production builds them, then VACUUM ANALYZE as autovacuum would leave
it. The same tickets and events are exported with COPY and loaded into an in-memory DuckDB, sorted by
time as a user would load them. gunicorn runs as the Procfile says (with a worker for aggregations
that become jobs). Each question is asked over HTTP with the organization's analytics cache emptied
before every request (DELETE /analytics/cache, not timed), so each answer is a cache miss, what a
dashboard's first load feels; and as DuckDB SQL with the same time-zone bucketing and metric
definitions. Both sides run --runs times after a warm-up (p50). The answers are compared: counts
exact, averages, minima, maxima and shares to 1e-9 relative, percentiles within 1% (the platform
merges sketches above ROLLUP_EXACT_PERCENTILE_MAX measurements). Results: bench/results/peer_<N>.json.

A question is one entry of QUESTIONS; a new metric is one entry of DUCK_METRICS.

    python -m bench.bench_peer [--tickets 10000000] [--runs 5] [--keep] [--only SUBSTRING]

--keep leaves the seeded cluster and the exported files under instance/bench/ and reuses them on the
next run of the same size (seeding 10M tickets takes half an hour on 2 CPUs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import duckdb
import psycopg

from bench.common import BENCH_INSTANCE, Stack, print_table, scratch_redis, write_results

TZ_NAME = "Europe/Berlin"
TZ = ZoneInfo(TZ_NAME)
PERCENTILES = (50, 95, 99)
API = "/api/v1"
EVENT_COLUMNS = "ticket_id, event_type, occurred_at, status, priority, channel, category, assigned_to, value"
TICKET_COLUMNS = (
    "id, status, priority, channel, category, assigned_to, sentiment_score, created_at,"
    " first_response_at, resolved_at"
)


# --- setup: seed, rollups, VACUUM ANALYZE, export; kept for the next run with --keep ---------------


@dataclass
class Setup:
    """A seeded cluster, what was measured setting it up, and the files its tickets were exported to."""

    pg: Any
    url: str
    home: Path
    facts: dict[str, Any]

    @property
    def now(self) -> datetime:
        return datetime.fromisoformat(self.facts["now"])


def _conninfo(url: str) -> str:
    return url.replace("+psycopg", "")


def prepare(tickets: int) -> Setup:
    """The cluster of this size, seeded, rolled up, analyzed and exported (reused when already done)."""
    from devstack.postgres import EmbeddedPostgres

    name = f"bench_peer_{tickets}"
    home = BENCH_INSTANCE / f"peer-{tickets}"
    home.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(BENCH_INSTANCE / f"postgres-{name}", fast_unsafe=True)
    pg.start()
    pg.wait_ready()
    url = pg.url(name)
    done = home / "setup.json"
    if done.exists():
        return Setup(pg, url, home, json.loads(done.read_text()))
    facts = _seed(pg, url, name, tickets)
    facts.update(_export(url, home, facts["org_id"]))
    done.write_text(json.dumps(facts, indent=2))
    return Setup(pg, url, home, facts)


def _seed(pg: Any, url: str, name: str, tickets: int) -> dict[str, Any]:
    from sqlalchemy.orm import Session

    from webapp.analytics import rollups
    from webapp.infra.db import make_engine
    from webapp.infra.migrations import upgrade
    from webapp.models import User
    from webapp.security.auth import hash_password
    from webapp.tickets import seeding

    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    upgrade(url)
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(_conninfo(url)) as conn:
        row = conn.execute(
            "INSERT INTO organizations (name, timezone) VALUES ('Bench', %s) RETURNING id", (TZ_NAME,)
        ).fetchone()
        assert row is not None
        org_id = int(row[0])
        conn.commit()
        seeded = seeding.seed_tickets(conn, org_id=org_id, tickets=tickets, seed=1, tz=TZ_NAME, now=now)
        conn.commit()
        conn.autocommit = True
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE tickets")
        conn.execute("VACUUM ANALYZE ticket_events")
        analyze_s = time.perf_counter() - started
    engine = make_engine(url)
    with Session(engine) as session:
        started = time.perf_counter()
        rollups.build(session, org_id=org_id, start=now - timedelta(days=366), end=now)
        session.add(
            User(org_id=org_id, email="admin@bench.test", password_hash=hash_password("b"), role="admin")
        )
        session.commit()
        build_s = time.perf_counter() - started
    engine.dispose()
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analytics_metrics")
        conn.execute("VACUUM ANALYZE users")
    return {
        "tickets": tickets,
        "events": seeded.events,
        "org_id": org_id,
        "now": now.isoformat(),
        "seed_s": seeded.seconds,
        "analyze_s": analyze_s,
        "rollup_build_s": build_s,
    }


def _export(url: str, home: Path, org_id: int) -> dict[str, Any]:
    """COPY the organization's tickets and events to CSV files beside the cluster."""
    started = time.perf_counter()
    with psycopg.connect(_conninfo(url)) as conn, conn.cursor() as cur:
        for table, columns in (("tickets", TICKET_COLUMNS), ("ticket_events", EVENT_COLUMNS)):
            statement = f"COPY (SELECT {columns} FROM {table} WHERE org_id = %s) TO STDOUT (FORMAT csv)"
            with (home / f"{table}.csv").open("wb") as out, cur.copy(statement, (org_id,)) as copy:
                for block in copy:
                    out.write(block)
    return {"export_s": time.perf_counter() - started}


def load_duckdb(home: Path) -> tuple[duckdb.DuckDBPyConnection, float]:
    """An in-memory DuckDB holding the exported tickets and events, each sorted by its time."""
    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    text, ts, num = "VARCHAR", "TIMESTAMPTZ", "DOUBLE"
    tables = {
        "tickets": (TICKET_COLUMNS, ["BIGINT", *[text] * 5, num, ts, ts, ts], "created_at"),
        "ticket_events": (EVENT_COLUMNS, ["BIGINT", text, ts, *[text] * 5, num], "occurred_at"),
    }
    for table, (columns, types, order) in tables.items():
        spec = ", ".join(f"'{c.strip()}': '{t}'" for c, t in zip(columns.split(","), types, strict=True))
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv('{home / (table + '.csv')}',"
            f" header = false, columns = {{{spec}}}) ORDER BY {order}"
        )
    return con, time.perf_counter() - started


# --- the questions: each asked over HTTP and as DuckDB SQL, answered in one comparable shape -------

# metric -> (the event that carries it, its value over events e and tickets t; None counts events).
DUCK_METRICS: dict[str, tuple[str, str | None]] = {
    "ticket_count": ("created", None),
    "response_time": ("first_response", "e.value"),
    "resolution_time": ("resolved", "e.value"),
    "sentiment_score": ("created", "t.sentiment_score"),
}
# The README's default SLA targets, hours (first response, resolution) by priority.
SLA_TARGETS = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 48), "low": (24, 120)}
Filters = dict[str, list[str]]
Tree = dict[str, Any]


@dataclass(frozen=True)
class Window:
    """The local day the benchmark's ranges end on (the day after the seed's), and the clock for SLA."""

    end_day: date
    now: datetime

    def bounds(self, days: int) -> tuple[datetime, datetime]:
        """[start, end) of the `days` local days before end_day, as instants."""
        return _midnight(self.end_day - timedelta(days=days)), _midnight(self.end_day)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), TZ)  # Berlin's midnight always exists


@dataclass(frozen=True)
class Question:
    """One question: the HTTP request, the comparable part of its answer, and the DuckDB side."""

    name: str
    request: Callable[[Window], tuple[str, str, Tree | None]]  # method, path, JSON body
    answer: Callable[[Tree], Tree]
    duck: Callable[[duckdb.DuckDBPyConnection, Window], Tree]


def _epoch(label: str) -> str:
    return str(int(datetime.fromisoformat(label).timestamp()))


def _in(alias: str, filters: Filters) -> str:
    return "".join(
        f" AND {alias}.{d} IN ({', '.join(repr(v) for v in values)})" for d, values in filters.items()
    )


def _bucket(granularity: str | None) -> str:
    """SQL of a measurement's bucket start (epoch seconds), or a constant when not bucketed."""
    if granularity == "daily":
        return f"epoch(timezone('{TZ_NAME}', date_trunc('day', timezone('{TZ_NAME}', e.occurred_at))))"
    if granularity == "hourly":  # Berlin's offsets are whole hours: a local hour is a UTC hour
        return "epoch(date_trunc('hour', e.occurred_at))"
    assert granularity is None, granularity
    return "0"


def _range(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat()}


def _measurements(metric: str, filters: Filters, *, columns: str = "") -> str:
    """FROM-clause subquery: the measurements of `metric` in [$start, $end) with b (bucket) and v."""
    event_type, value = DUCK_METRICS[metric]
    join = " JOIN tickets t ON t.id = e.ticket_id" if value and value.startswith("t.") else ""
    return (
        f"(SELECT e.occurred_at{columns}, {value or 'NULL'} AS v FROM ticket_events e{join}"
        f" WHERE e.event_type = '{event_type}' AND e.occurred_at >= CAST($start AS TIMESTAMPTZ)"
        f" AND e.occurred_at < CAST($end AS TIMESTAMPTZ){_in('e', filters)}) e"
    )


def _query_string(days: int, window: Window, filters: Filters, **extra: Any) -> str:
    start_day = window.end_day - timedelta(days=days)
    query = {**extra, "start": start_day.isoformat(), "end": window.end_day.isoformat()}
    return urlencode({**query, **{d: ",".join(v) for d, v in filters.items()}})


def series(metric: str, granularity: str, days: int, filters: Filters | None = None) -> Question:
    """GET /analytics/time-series/{metric}: every bucket's count (and mean, min, max) and the total."""
    filters = filters or {}
    counted = DUCK_METRICS[metric][1] is None
    stats = ("count",) if counted else ("count", "value", "min", "max")

    def request(w: Window) -> tuple[str, str, None]:
        query = _query_string(days, w, filters, granularity=granularity)
        return "GET", f"{API}/analytics/time-series/{metric}?{query}", None

    def answer(body: Tree) -> Tree:
        points = {_epoch(p["bucket"]): {s: p[s] for s in stats} for p in body["points"]}
        total = body["summary"]
        return {"points": points, "total": {s: total[s] for s in ("total_count", "avg", "min", "max")}}

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        count = "count(*)" if counted else "count(v)"
        rows = con.execute(
            f"SELECT GROUPING(b) AS total, b, {count}, avg(v), min(v), max(v) FROM"
            f" (SELECT {_bucket(granularity)} AS b, v FROM {_measurements(metric, filters)})"
            " GROUP BY GROUPING SETS ((b), ())",
            _range(*w.bounds(days)),
        ).fetchall()
        points = {
            str(int(b)): dict(zip(stats, (n, avg, lo, hi), strict=False))
            for t, b, n, avg, lo, hi in rows
            if not t
        }
        (n, avg, lo, hi) = next(r[2:] for r in rows if r[0])
        if counted:  # the summary is over buckets, empty ones included
            start, end = w.bounds(days)
            buckets = (
                days
                if granularity == "daily"
                else int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()) // 3600
            )
            counts = [p["count"] for p in points.values()] + [0] * (buckets - len(points))
            avg, lo, hi = n / buckets, min(counts), max(counts)
        return {"points": points, "total": {"total_count": n, "avg": avg, "min": lo, "max": hi}}

    label = f"series {metric} {days}d {granularity}" + "".join(
        f" {d}={','.join(v)}" for d, v in filters.items()
    )
    return Question(label, request, answer, duck)


def aggregation(
    metrics: list[str], group_by: list[str], days: int, granularity: str | None = None
) -> Question:
    """POST /analytics/aggregations: per group (and bucket) count, avg, min, max and p50/p95/p99."""
    assert all(DUCK_METRICS[m][1] in (None, "e.value") for m in metrics), "one scan of the events"

    def request(w: Window) -> tuple[str, str, Tree]:
        start, end = w.end_day - timedelta(days=days), w.end_day
        body = {
            "metrics": metrics,
            "group_by": group_by,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "percentiles": list(PERCENTILES),
            **({"granularity": granularity} if granularity else {}),
        }
        return "POST", f"{API}/analytics/aggregations", body

    def answer(body: Tree) -> Tree:
        out: Tree = {}
        for row in body["rows"]:
            key = json.dumps(
                [*(row["group"][g] for g in group_by), _epoch(row["bucket"]) if granularity else "0"]
            )
            out[key] = {m: row[m] for m in metrics if row[m]["count"]}
        return out

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        types = {DUCK_METRICS[m][0]: m for m in metrics}
        groups = "".join(f", e.{g}" for g in group_by)
        fractions = [p / 100 for p in PERCENTILES]
        rows = con.execute(
            f"SELECT e.event_type{groups}, {_bucket(granularity)} AS b, count(*), count(e.value),"
            f" avg(e.value), min(e.value), max(e.value), quantile_cont(e.value, {fractions})"
            f" FROM ticket_events e WHERE e.event_type IN ({', '.join(repr(t) for t in types)})"
            " AND e.occurred_at >= CAST($start AS TIMESTAMPTZ) AND e.occurred_at < CAST($end AS TIMESTAMPTZ)"
            " GROUP BY ALL",
            _range(*w.bounds(days)),
        ).fetchall()
        out: Tree = {}
        width = len(group_by)
        for row in rows:
            metric, key = types[row[0]], json.dumps([*row[1 : 1 + width], str(int(row[1 + width]))])
            events, n, avg, lo, hi, pct = row[2 + width :]
            if DUCK_METRICS[metric][1] is None:
                stats: Tree = {"count": events}
            else:
                stats = {"count": n, "avg": avg, "min": lo, "max": hi}
                stats.update({f"p{p}": v for p, v in zip(PERCENTILES, pct or [None] * 3, strict=True)})
            out.setdefault(key, {})[metric] = stats
        return out

    by = "x".join(group_by) or "none"
    label = f"aggregation {'+'.join(metrics)} by {by} {days}d" + (f" {granularity}" if granularity else "")
    return Question(label, request, answer, duck)


def _sla(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, now: datetime) -> Tree:
    """Met, breached, pending and compliance of first response and resolution, overall and by priority."""
    targets = ", ".join(
        f"('{p}', {fr * 3600_000_000}, {res * 3600_000_000})" for p, (fr, res) in SLA_TARGETS.items()
    )
    kinds = {"first_response": ("first_response_at", "fr"), "resolution": ("resolved_at", "res")}
    counts = []
    for kind, (column, target) in kinds.items():
        deadline = f"epoch_us(t.created_at) + s.{target}"
        counts += [
            f"count(*) FILTER (WHERE epoch_us(t.{column}) <= {deadline}) AS {kind}_met",
            f"count(*) FILTER (WHERE epoch_us(t.{column}) > {deadline}"
            f" OR (t.{column} IS NULL AND {deadline} < $now)) AS {kind}_breached",
            f"count(*) FILTER (WHERE t.{column} IS NULL AND {deadline} >= $now) AS {kind}_pending",
        ]
    rows = con.execute(
        f"SELECT t.priority, {', '.join(counts)} FROM tickets t"
        f" JOIN (VALUES {targets}) s(priority, fr, res) ON s.priority = t.priority"
        " WHERE t.created_at >= CAST($start AS TIMESTAMPTZ) AND t.created_at < CAST($end AS TIMESTAMPTZ)"
        " GROUP BY t.priority",
        {**_range(start, end), "now": int(now.timestamp() * 1_000_000)},
    ).fetchall()

    def outcome(met: int, breached: int, pending: int) -> Tree:
        judged = met + breached
        return {
            "met": met,
            "breached": breached,
            "pending": pending,
            "compliance": met / judged if judged else None,
        }

    by_priority = {
        row[0]: {k: outcome(*row[1 + 3 * i : 4 + 3 * i]) for i, k in enumerate(kinds)} for row in rows
    }
    overall = {
        k: outcome(*(sum(row[1 + 3 * i + j] for row in rows) for j in range(3))) for i, k in enumerate(kinds)
    }
    return {"overall": overall, "by_priority": by_priority}


def _sla_answer(sla: Tree) -> Tree:
    return {"overall": sla["overall"], "by_priority": sla["by_priority"]}


def _durations(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> Tree:
    """Count, avg, min, max and percentiles of response and resolution time in [start, end)."""
    fractions = [p / 100 for p in PERCENTILES]
    rows = con.execute(
        "SELECT e.event_type, count(e.value), avg(e.value), min(e.value), max(e.value),"
        f" quantile_cont(e.value, {fractions}) FROM ticket_events e"
        " WHERE e.event_type IN ('first_response', 'resolved')"
        " AND e.occurred_at >= CAST($start AS TIMESTAMPTZ) AND e.occurred_at < CAST($end AS TIMESTAMPTZ)"
        " GROUP BY ALL",
        _range(start, end),
    ).fetchall()
    names = {"first_response": "response_time", "resolved": "resolution_time"}
    return {
        names[t]: {
            "count": n,
            "avg": avg,
            "min": lo,
            "max": hi,
            **dict(zip((f"p{p}" for p in PERCENTILES), pct, strict=True)),
        }
        for t, n, avg, lo, hi, pct in rows
    }


def performance(days: int) -> Question:
    """GET /analytics/performance: percentiles, avg and count of both durations, and SLA compliance."""

    def request(w: Window) -> tuple[str, str, None]:
        return "GET", f"{API}/analytics/performance?{_query_string(days, w, {})}", None

    def answer(body: Tree) -> Tree:
        keep = ("count", "avg", "min", "max", *(f"p{p}" for p in PERCENTILES))
        out = {m: {k: body[m][k] for k in keep} for m in ("response_time", "resolution_time")}
        return {**out, "sla": _sla_answer(body["sla"])}

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        start, end = w.bounds(days)
        return {**_durations(con, start, end), "sla": _sla(con, start, end, w.now)}

    return Question(f"performance {days}d", request, answer, duck)


def _distributions(con: duckdb.DuckDBPyConnection, fields: list[str], start: datetime, end: datetime) -> Tree:
    """Per field: the current values of the tickets created in [start, end), counts and shares."""
    sets = ", ".join(f"({f})" for f in fields)
    rows = con.execute(
        f"SELECT {', '.join(f'GROUPING({f})' for f in fields)}, {', '.join(fields)}, count(*) FROM tickets t"
        " WHERE t.created_at >= CAST($start AS TIMESTAMPTZ) AND t.created_at < CAST($end AS TIMESTAMPTZ)"
        f" GROUP BY GROUPING SETS ({sets})",
        _range(start, end),
    ).fetchall()
    out: Tree = {}
    width = len(fields)
    for i, field in enumerate(fields):
        mine = [(row[width + i], row[-1]) for row in rows if row[i] == 0]
        total = sum(n for _, n in mine)
        values = {str(v): {"count": n, "share": n / total} for v, n in mine}
        out[field] = {"total": total, "values": values}
    return out


def _distribution_answer(body: Tree) -> Tree:
    values = {str(v["value"]): {"count": v["count"], "share": v["share"]} for v in body["values"]}
    return {"total": body["total"], "values": values}


def distribution(field: str, days: int) -> Question:
    """GET /analytics/distribution/{field}: current values over the tickets created in the range."""

    def request(w: Window) -> tuple[str, str, None]:
        return "GET", f"{API}/analytics/distribution/{field}?{_query_string(days, w, {})}", None

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        return _distributions(con, [field], *w.bounds(days))[field]

    return Question(f"distribution {field} {days}d", request, _distribution_answer, duck)


def dashboard(days: int) -> Question:
    """GET /analytics/dashboard?period=Nd: KPIs against the period before, backlog, series, mix, SLA."""
    kpis = {"ticket_count": "count", "avg_response_time": "avg", "avg_resolution_time": "avg"}

    def request(w: Window) -> tuple[str, str, None]:
        query = urlencode({"period": f"{days}d", "end": w.end_day.isoformat()})
        return "GET", f"{API}/analytics/dashboard?{query}", None

    def answer(body: Tree) -> Tree:
        return {
            "kpis": {k: body["kpis"][k] for k in (*kpis, "avg_sentiment_score")},
            "backlog": body["backlog"],
            "series": {_epoch(p["bucket"]): p["count"] for p in body["ticket_count_series"]},
            "distributions": {f: _distribution_answer(d) for f, d in body["distributions"].items()},
            "sla": _sla_answer(body["sla"]),
        }

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        start, end = w.bounds(days)
        previous = _midnight(w.end_day - timedelta(days=2 * days))
        rows = con.execute(
            "SELECT e.occurred_at >= CAST($start AS TIMESTAMPTZ) AS current, e.event_type,"
            " count(*), avg(e.value) FROM ticket_events e"
            " WHERE e.event_type IN ('created', 'first_response', 'resolved')"
            " AND e.occurred_at >= CAST($previous AS TIMESTAMPTZ)"
            " AND e.occurred_at < CAST($end AS TIMESTAMPTZ) GROUP BY ALL UNION ALL"
            " SELECT t.created_at >= CAST($start AS TIMESTAMPTZ), 'sentiment', count(*),"
            " avg(t.sentiment_score)"
            " FROM tickets t WHERE t.created_at >= CAST($previous AS TIMESTAMPTZ)"
            " AND t.created_at < CAST($end AS TIMESTAMPTZ) GROUP BY ALL",
            {**_range(start, end), "previous": previous.astimezone(UTC).isoformat()},
        ).fetchall()
        got = {(current, kind): (n, avg) for current, kind, n, avg in rows}
        sources = {
            "ticket_count": ("created", 0),
            "avg_response_time": ("first_response", 1),
            "avg_resolution_time": ("resolved", 1),
            "avg_sentiment_score": ("sentiment", 1),
        }
        out_kpis: Tree = {}
        for name, (kind, column) in sources.items():
            value, before = (got.get((c, kind), (0, None))[column] for c in (True, False))
            change = (value - before) / abs(before) * 100 if value is not None and before else None
            out_kpis[name] = {"value": value, "previous": before, "change_pct": change}
        series = con.execute(
            f"SELECT {_bucket('daily')}, count(*) FROM {_measurements('ticket_count', {})} GROUP BY ALL",
            _range(start, end),
        ).fetchall()
        backlog = dict(
            con.execute(
                "SELECT status, count(*) FROM tickets WHERE created_at < CAST($end AS TIMESTAMPTZ)"
                " AND status NOT IN ('resolved', 'closed') GROUP BY status",
                {"end": end.astimezone(UTC).isoformat()},
            ).fetchall()
        )
        return {
            "kpis": out_kpis,
            "backlog": {"count": sum(backlog.values()), "by_status": backlog},
            "series": {str(int(b)): n for b, n in series},
            "distributions": _distributions(con, ["status", "priority"], start, end),
            "sla": _sla(con, start, end, w.now),
        }

    return Question(f"dashboard {days}d", request, answer, duck)


TWO_FILTERS: Filters = {"priority": ["high", "urgent"], "channel": ["email"]}
ONE_FILTER: Filters = {"priority": ["high", "urgent"]}
QUESTIONS: list[Question] = [
    dashboard(30),
    *(
        series(metric, granularity, days, filters)
        for granularity, days in (("daily", 365), ("hourly", 90))
        for metric in ("ticket_count", "response_time")
        for filters in ({}, ONE_FILTER, TWO_FILTERS)
    ),
    aggregation(["ticket_count"], ["priority"], 365, "daily"),
    aggregation(["ticket_count"], ["channel"], 90, "hourly"),
    aggregation(["response_time", "resolution_time"], ["priority"], 90),
    aggregation(["response_time", "resolution_time"], ["channel", "priority"], 90),
    performance(30),
    distribution("category", 90),
    distribution("status", 30),
]


# --- comparing and timing ------------------------------------------------------------------------


def flatten(tree: Tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaves by path; a zero or missing leaf is left out (empty buckets and groups on either side)."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, (*prefix, str(key))))
        elif value is not None and value != 0:
            out[(*prefix, str(key))] = value
    return out


def _close(x: Any, a: Any, b: Any, stat: str) -> bool:
    """x agrees with a or b or lies between them (b: the other side computed at a later clock)."""
    if a is None or b is None or x is None:
        return x in (a, b)
    if all(isinstance(v, int) for v in (x, a, b)):
        return min(a, b) <= x <= max(a, b)
    tolerance = 0.01 if stat[0] == "p" and stat[1:].isdigit() else 1e-9
    scale = max(abs(a), abs(b), 1e-300)
    return min(a, b) - tolerance * scale <= x <= max(a, b) + tolerance * scale


def differences(platform: Tree, early: Tree, late: Tree) -> list[str]:
    """Where the platform's answer disagrees with DuckDB's (computed at the request's start and end)."""
    ours, before, after = flatten(platform), flatten(early), flatten(late)
    out = []
    for key in sorted(set(ours) | set(before) | set(after)):
        if not _close(ours.get(key), before.get(key), after.get(key), key[-1]):
            out.append(f"{'.'.join(key)}: platform {ours.get(key)!r}, duckdb {before.get(key)!r}")
    return out


class Client:
    """One persistent HTTP connection to the web process with an admin's token."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Tree | None = None) -> tuple[int, Tree]:
        payload = json.dumps(body) if body is not None else None
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}

    def cold(self, method: str, path: str, body: Tree | None) -> tuple[Tree, bool]:
        """The answer with the cache emptied first (an aggregation that became a job: its result)."""
        status, _ = self.call("DELETE", f"{API}/analytics/cache")
        assert status in (200, 202, 204), status
        status, answer = self.call(method, path, body)
        if status == 202:
            while True:
                status, job = self.call("GET", answer["status_url"])
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    assert job["state"] == "succeeded", job
                    return job["result"], True
                time.sleep(0.01)
        assert status == 200, (status, answer)
        assert answer.get("meta", {}).get("cache", "miss") == "miss", answer["meta"]
        return answer, False


def ask(question: Question, client: Client, con: duckdb.DuckDBPyConnection, end_day: date, runs: int) -> Tree:
    """Warm both sides once, time `runs` of each (p50), and compare the last platform answer with DuckDB's."""
    method, path, body = question.request(Window(end_day, datetime.now(UTC)))
    platform_ms, duck_ms = [], []
    for i in range(runs + 1):
        began = datetime.now(UTC)
        started = time.perf_counter()
        answer, via_job = client.cold(method, path, body)
        elapsed = (time.perf_counter() - started) * 1000
        ended = datetime.now(UTC)
        if i:
            platform_ms.append(elapsed)
    for i in range(runs + 1):
        started = time.perf_counter()
        question.duck(con, Window(end_day, datetime.now(UTC)))
        if i:
            duck_ms.append((time.perf_counter() - started) * 1000)
    early, late = (question.duck(con, Window(end_day, moment)) for moment in (began, ended))
    wrong = differences(question.answer(answer), early, late)
    meta = answer.get("meta", {})
    return {
        "question": question.name,
        "request": f"{method} {path}" + (f" {json.dumps(body)}" if body else ""),
        "platform_ms": statistics.median(platform_ms),
        "duckdb_ms": statistics.median(duck_ms),
        "platform_runs_ms": platform_ms,
        "duckdb_runs_ms": duck_ms,
        "source": "job" if via_job else meta.get("source"),
        "approximate": meta.get("approximate"),
        "compared": len(flatten(early)),
        "equal": not wrong,
        "differences": wrong[:10],
    }


def serve(setup: Setup, redis_url: str) -> Stack:
    """gunicorn and a worker as the Procfile runs them, on the seeded database, with an admin's token."""
    from webapp import config, create_app
    from webapp.models import User
    from webapp.security.auth import access_token_for

    instance = setup.home / "instance"
    instance.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": setup.url,
        "REDIS_URL": redis_url,
        "BROKER_URL": redis_url,
        "INSTANCE_PATH": str(instance),
        "JWT_SECRET_KEY": secret,
        "JWT_ACCESS_TOKEN_MINUTES": "600",
        "EXPORT_DIR": str(instance / "exports"),
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ANALYTICS_PER_MINUTE": str(10**9),
        "RATE_LIMIT_JOBS_PER_MINUTE": str(10**9),
    }
    settings = config.load()
    settings.update(
        INSTANCE_PATH=str(instance),
        SQLALCHEMY_DATABASE_URL=setup.url,
        REDIS_URL=redis_url,
        BROKER_URL=redis_url,
        JWT_SECRET_KEY=secret,
        JWT_ACCESS_TOKEN_MINUTES=600,
    )
    app = create_app(settings)
    with app.app_context(), app.extensions["db_sessionmaker"]() as session:
        user = session.query(User).filter_by(email="admin@bench.test").one()
        token = access_token_for(user)
    app.extensions["db_engine"].dispose()
    stack = Stack(setup.url, redis_url, env, setup.facts["org_id"], token)
    stack.start_web()
    stack.start_worker()
    return stack


def sizes(setup: Setup, con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Bytes each side holds the data in: PostgreSQL tables with indexes and rollups, DuckDB's memory."""
    with psycopg.connect(_conninfo(setup.url)) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('tickets'), pg_total_relation_size('ticket_events'),"
            " (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('analytics_metrics'))"
        ).fetchone()
    assert row is not None
    duck = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
    return {
        "pg_tickets": int(row[0]),
        "pg_events": int(row[1]),
        "pg_rollups": int(row[2]),
        "duckdb_memory": int(duck[0]) if duck else 0,
    }


def run(args: argparse.Namespace) -> Tree:
    """Set up (or reuse), load DuckDB, serve, and ask every chosen question."""
    setup = prepare(args.tickets)
    redis_server = scratch_redis("bench_peer")
    stack: Stack | None = None
    try:
        print(f"loading {args.tickets:,} tickets into DuckDB ...", flush=True)
        con, load_s = load_duckdb(setup.home)
        con.execute(f"SET threads = {os.cpu_count()}")
        stack = serve(setup, redis_server.url)
        client = Client(stack.port, stack.admin_token)
        end_day = setup.now.astimezone(TZ).date() + timedelta(days=1)
        chosen = [q for q in QUESTIONS if args.only in q.name]
        results = []
        for question in chosen:
            result = ask(question, client, con, end_day, args.runs)
            mark = "equal" if result["equal"] else f"DIFFERENT: {result['differences'][:2]}"
            print(
                f"  {question.name}: {result['platform_ms']:.1f} ms vs {result['duckdb_ms']:.1f} ms, {mark}",
                flush=True,
            )
            results.append(result)
        return {
            "setup": {**setup.facts, "duckdb_load_s": load_s, "bytes": sizes(setup, con)},
            "runs": args.runs,
            "web_command": "gunicorn (Procfile web), one Celery worker (Procfile worker)",
            "questions": results,
        }
    finally:
        if stack is not None:
            stack.stop_processes()
        redis_server.stop()
        setup.pg.stop()
        if not args.keep:
            shutil.rmtree(setup.home, ignore_errors=True)
            shutil.rmtree(BENCH_INSTANCE / f"postgres-bench_peer_{args.tickets}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=10_000_000, help="seeded tickets (default 10,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per question and side (p50)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded cluster and exports for the next run"
    )
    parser.add_argument("--only", default="", help="ask only the questions whose name contains this")
    parser.add_argument(
        "--setup-only", action="store_true", help="seed, build and export, then stop (with --keep)"
    )
    args = parser.parse_args()
    if args.setup_only:
        prepare(args.tickets).pg.stop()
        return
    out = run(args)
    rows = [
        [
            r["question"],
            r["platform_ms"],
            r["duckdb_ms"],
            r["platform_ms"] / r["duckdb_ms"],
            r["source"],
            "yes" if r["equal"] else "NO",
        ]
        for r in out["questions"]
    ]
    print_table(
        f"Cold reads at {args.tickets:,} tickets, p50 of {args.runs} (ms)",
        ["question", "platform", "duckdb", "ratio", "source", "equal"],
        rows,
    )
    setup = out["setup"]
    wins = sum(r["platform_ms"] <= r["duckdb_ms"] for r in out["questions"])
    equal = sum(r["equal"] for r in out["questions"])
    print(
        f"\nseeded in {setup['seed_s']:.0f} s, rollups built in {setup['rollup_build_s']:.0f} s,"
        f" DuckDB loaded in {setup['duckdb_load_s']:.0f} s; platform wins {wins} of {len(rows)},"
        f" answers equal {equal} of {len(rows)}"
    )
    path = write_results(f"peer_{args.tickets}", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
