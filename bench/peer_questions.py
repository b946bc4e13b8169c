"""The questions of the cold-read benchmark: each endpoint's request, the part of its answer compared,
and the same question as DuckDB SQL over the exported tickets and events, in one comparable shape.

A question is one call of a builder in QUESTIONS; a new metric is one entry of DUCK_METRICS. Bucketing
follows the README: days are local days (timezone() and date_trunc in the organization's zone), and
an hour is a UTC hour (Europe/Berlin's offsets are whole hours).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import duckdb

TZ_NAME = "Europe/Berlin"
TZ = ZoneInfo(TZ_NAME)
PERCENTILES = (50, 95, 99)
API = "/api/v1"

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
    """SQL of a measurement's bucket: its local date, its UTC hour (epoch seconds), or 0 (no buckets)."""
    if granularity == "daily":  # the fastest of the spellings tried (date_trunc, time_bucket: 1.1x-2x)
        return f"CAST(timezone('{TZ_NAME}', e.occurred_at) AS DATE)"
    if granularity == "hourly":  # Berlin's offsets are whole hours: a local hour is a UTC hour
        return "epoch(date_trunc('hour', e.occurred_at))"
    assert granularity is None, granularity
    return "0"


def _key(bucket: Any) -> str:
    """A DuckDB bucket as the epoch seconds of its start, as _epoch makes of the platform's label."""
    if isinstance(bucket, date):
        return str(int(_midnight(bucket).timestamp()))
    return str(int(bucket))


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
            _key(b): dict(zip(stats, (n, avg, lo, hi), strict=False))
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
            metric, key = types[row[0]], json.dumps([*row[1 : 1 + width], _key(row[1 + width])])
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
    """Met, breached, pending and compliance of first response and resolution, overall and by priority.

    As the contract defines them under the default policy (calendar, no pauses): the first response
    within its target of creation; resolution counts the time the ticket spent in unsolved statuses,
    so a reopen continues the clock from where the solve stopped it (summed from the backlog steps,
    +1 entering an unsolved status and -1 leaving it, with the span still open counted up to now).
    """
    targets = ", ".join(
        f"('{p}', {fr * 3600_000_000}, {res * 3600_000_000})" for p, (fr, res) in SLA_TARGETS.items()
    )
    solved = "t.status IN ('resolved', 'closed')"
    elapsed = (
        "coalesce(b.closed, 0) + CASE WHEN b.open > 0 THEN greatest($now, epoch_us(b.entered)) ELSE 0 END"
    )
    answered = "epoch_us(t.first_response_at) - epoch_us(t.created_at)"
    waited = "$now - epoch_us(t.created_at)"
    counts = [
        f"count(*) FILTER (WHERE {answered} <= s.fr) AS first_response_met",
        f"count(*) FILTER (WHERE {answered} > s.fr OR (t.first_response_at IS NULL AND {waited} > s.fr))"
        " AS first_response_breached",
        f"count(*) FILTER (WHERE t.first_response_at IS NULL AND {waited} <= s.fr) AS first_response_pending",
        f"count(*) FILTER (WHERE {solved} AND {elapsed} <= s.res) AS resolution_met",
        f"count(*) FILTER (WHERE {elapsed} > s.res) AS resolution_breached",
        f"count(*) FILTER (WHERE NOT {solved} AND {elapsed} <= s.res) AS resolution_pending",
    ]
    kinds = ("first_response", "resolution")
    rows = con.execute(
        f"SELECT t.priority, {', '.join(counts)} FROM tickets t"
        f" JOIN (VALUES {targets}) s(priority, fr, res) ON s.priority = t.priority"
        " LEFT JOIN (SELECT ticket_id, sum(-value * epoch_us(occurred_at)) AS closed, sum(value) AS open,"
        " max(occurred_at) FILTER (WHERE value > 0) AS entered FROM ticket_events"
        " WHERE event_type = 'backlog' AND occurred_at >= CAST($start AS TIMESTAMPTZ) GROUP BY ticket_id) b"
        " ON b.ticket_id = t.id"
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


# What DuckDB's side computes of the SLA answer: the first contract's outcomes (the answer also
# carries next_reply and the newer name `achieved` for `met`, which the question does not ask for).
SLA_KINDS = ("first_response", "resolution")
SLA_FIELDS = ("met", "breached", "pending", "compliance")


def _sla_answer(sla: Tree) -> Tree:
    def outcomes(part: Tree) -> Tree:
        return {kind: {field: part[kind][field] for field in SLA_FIELDS} for kind in SLA_KINDS}

    by_priority = {priority: outcomes(part) for priority, part in sla["by_priority"].items()}
    return {"overall": outcomes(sla["overall"]), "by_priority": by_priority}


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
                "SELECT status, count(*) FROM tickets WHERE created_at >= CAST($start AS TIMESTAMPTZ)"
                " AND created_at < CAST($end AS TIMESTAMPTZ)"
                " AND status NOT IN ('resolved', 'closed') GROUP BY status",
                _range(start, end),
            ).fetchall()
        )
        return {
            "kpis": out_kpis,
            "backlog": {"count": sum(backlog.values()), "by_status": backlog},
            "series": {_key(b): n for b, n in series},
            "distributions": _distributions(con, ["status", "priority"], start, end),
            "sla": _sla(con, start, end, w.now),
        }

    return Question(f"dashboard {days}d", request, answer, duck)


# --- the support metrics: backlog, satisfaction, one-touch, and durations in business hours -------

# The organization's default schedule (bench_peer creates it and builds its rollups): weekdays with a
# lunch break, Saturday mornings, and Berlin's public holidays of the seeded year.
SCHEDULE: Tree = {
    "name": "Office hours",
    "timezone": TZ_NAME,
    "intervals": [
        *({"day": d, "start": "09:00", "end": "12:30"} for d in ("mon", "tue", "wed", "thu", "fri")),
        *({"day": d, "start": "13:30", "end": "17:30"} for d in ("mon", "tue", "wed", "thu", "fri")),
        {"day": "sat", "start": "10:00", "end": "14:00"},
    ],
    "holidays": [
        {"date": d, "name": "closed"}
        for d in (
            "2025-12-25", "2025-12-26", "2026-01-01", "2026-04-03", "2026-04-06", "2026-05-01",
            "2026-05-14", "2026-05-25", "2026-10-03", "2026-12-25", "2026-12-26",
        )
    ],
}  # fmt: skip
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def schedule_spans(first: date, last: date) -> list[tuple[int, int, int]]:
    """The schedule's open spans on the local days first..last, from its definition alone (zoneinfo
    for the offsets): (start, length, open time before it), microseconds since the epoch."""
    closed = {h["date"] for h in SCHEDULE["holidays"]}
    spans: list[tuple[int, int]] = []
    day = first
    while day <= last:
        if day.isoformat() not in closed:
            for interval in SCHEDULE["intervals"]:
                if interval["day"] == _DAYS[day.weekday()]:
                    start, end = (
                        datetime.combine(day, datetime.strptime(interval[k], "%H:%M").time(), TZ)
                        for k in ("start", "end")
                    )
                    spans.append((int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000))
        day += timedelta(days=1)
    spans.sort()
    out, before = [], 0
    for start, end in spans:
        out.append((start, end - start, before))
        before += end - start
    return out


def _open_before(alias: str, instant: str) -> str:
    """SQL of C(instant): open microseconds before it, from the ASOF-joined span `alias`."""
    return f"({alias}.before + least(greatest({instant} - {alias}.start_us, 0), {alias}.len))"


def _percent_or_count_points(body: Tree) -> Tree:
    return {_epoch(p["bucket"]): {"count": p["count"], "value": p["value"]} for p in body["points"]}


def backlog(days: int) -> Question:
    """GET /analytics/time-series/backlog daily: at each local day's end, the tickets created before it
    whose status then is unsolved (the sum of the +1/-1 backlog steps before that instant)."""

    def request(w: Window) -> tuple[str, str, None]:
        return (
            "GET",
            f"{API}/analytics/time-series/backlog?{_query_string(days, w, {}, granularity='daily')}",
            None,
        )

    def answer(body: Tree) -> Tree:
        total = body["summary"]
        return {
            "points": _percent_or_count_points(body),
            "total": {s: total[s] for s in ("total_count", "avg", "min", "max")},
        }

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        end = w.bounds(days)[1]
        rows = con.execute(
            f"SELECT {_bucket('daily')} AS b, sum(e.value) FROM ticket_events e"
            " WHERE e.event_type = 'backlog' AND e.occurred_at < CAST($end AS TIMESTAMPTZ) GROUP BY b",
            {"end": end.astimezone(UTC).isoformat()},
        ).fetchall()
        steps = dict(rows)
        first = w.end_day - timedelta(days=days)
        running = round(sum(v for b, v in steps.items() if b < first))
        points: Tree = {}
        values = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            running += round(steps.get(day, 0))
            points[_key(day)] = {"count": running, "value": running}
            values.append(running)
        total = {"total_count": values[-1], "avg": sum(values) / days, "min": min(values), "max": max(values)}
        return {"points": points, "total": total}

    return Question(f"series backlog {days}d daily", request, answer, duck)


# A percentage metric: the event it is read at (valued 100 or 0).
PERCENT_EVENTS = {"csat": "rated", "one_touch": "solved"}


def percent(metric: str, days: int) -> Question:
    """GET /analytics/time-series/{csat|one_touch} daily: per local day the events counted and the
    percentage of them valued good (100)."""

    def request(w: Window) -> tuple[str, str, None]:
        query = _query_string(days, w, {}, granularity="daily")
        return "GET", f"{API}/analytics/time-series/{metric}?{query}", None

    def answer(body: Tree) -> Tree:
        return {"points": _percent_or_count_points(body), "total": body["summary"]["total_count"]}

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        rows = con.execute(
            f"SELECT {_bucket('daily')} AS b, count(*), avg(e.value) FROM ticket_events e"
            f" WHERE e.event_type = '{PERCENT_EVENTS[metric]}'"
            " AND e.occurred_at >= CAST($start AS TIMESTAMPTZ) AND e.occurred_at < CAST($end AS TIMESTAMPTZ)"
            " GROUP BY b",
            _range(*w.bounds(days)),
        ).fetchall()
        points = {_key(b): {"count": n, "value": v} for b, n, v in rows}
        return {"points": points, "total": sum(n for _, n, _ in rows)}

    return Question(f"series {metric} {days}d daily", request, answer, duck)


def business(metric: str, granularity: str, days: int) -> Question:
    """GET /analytics/time-series/{duration}?clock=business: each measurement in its event's bucket,
    its value the schedule's open hours from the ticket's creation to the event, C(event) - C(created),
    C from the open spans (schedule_spans) by an ASOF join."""
    event_type = DUCK_METRICS[metric][0]

    def request(w: Window) -> tuple[str, str, None]:
        query = _query_string(days, w, {}, granularity=granularity, clock="business")
        return "GET", f"{API}/analytics/time-series/{metric}?{query}", None

    def answer(body: Tree) -> Tree:
        stats = ("count", "value", "min", "max")
        points = {_epoch(p["bucket"]): {s: p[s] for s in stats} for p in body["points"]}
        total = body["summary"]
        return {"points": points, "total": {s: total[s] for s in ("total_count", "avg", "min", "max")}}

    def duck(con: duckdb.DuckDBPyConnection, w: Window) -> Tree:
        rows = con.execute(
            "SELECT GROUPING(b) AS total, b, count(*), avg(v), min(v), max(v) FROM ("
            f" SELECT m.b, (m.c_event - {_open_before('sc', 'm.created_us')}) / 3600e6 AS v FROM ("
            f"  SELECT m.b, m.created_us, {_open_before('se', 'm.event_us')} AS c_event FROM ("
            f"   SELECT {_bucket(granularity)} AS b, epoch_us(e.occurred_at) AS event_us,"
            "    epoch_us(t.created_at) AS created_us"
            "    FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id"
            f"    WHERE e.event_type = '{event_type}' AND e.occurred_at >= CAST($start AS TIMESTAMPTZ)"
            "    AND e.occurred_at < CAST($end AS TIMESTAMPTZ)) m"
            "  ASOF JOIN spans se ON m.event_us >= se.start_us) m"
            " ASOF JOIN spans sc ON m.created_us >= sc.start_us)"
            " GROUP BY GROUPING SETS ((b), ())",
            _range(*w.bounds(days)),
        ).fetchall()
        points = {
            _key(b): {"count": n, "value": avg, "min": lo, "max": hi}
            for t, b, n, avg, lo, hi in rows
            if not t
        }
        (n, avg, lo, hi) = next(r[2:] for r in rows if r[0])
        return {"points": points, "total": {"total_count": n, "avg": avg, "min": lo, "max": hi}}

    return Question(f"series {metric} {days}d {granularity} clock=business", request, answer, duck)


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
    backlog(365),
    percent("csat", 90),
    percent("one_touch", 90),
    business("response_time", "daily", 365),
    business("resolution_time", "daily", 90),
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
