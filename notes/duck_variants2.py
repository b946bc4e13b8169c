"""Whether DuckDB's parameter casts cost per row: the same count with literals and with parameters."""

import datetime as dt
import sys
import time

sys.path.insert(0, ".")
from pathlib import Path

from bench.bench_peer import load_duckdb

con, s = load_duckdb(Path("instance/bench/peer-1000000"))


def t(name, sql, p=None):
    con.execute(sql, p).fetchall() if p else con.execute(sql).fetchall()
    ts = []
    for _ in range(3):
        a = time.perf_counter()
        r = (con.execute(sql, p) if p else con.execute(sql)).fetchall()
        ts.append((time.perf_counter() - a) * 1000)
    print(f"{name:40s} {sorted(ts)[1]:8.1f} ms {r[:1]}")


P = {"start": "2025-12-04T23:00:00+00:00", "end": "2026-12-04T23:00:00+00:00"}
t(
    "param cast",
    "SELECT count(*) FROM ticket_events e WHERE e.event_type = 'created' AND e.occurred_at >= CAST($start AS TIMESTAMPTZ) AND e.occurred_at < CAST($end AS TIMESTAMPTZ)",
    P,
)
t(
    "literal",
    "SELECT count(*) FROM ticket_events e WHERE e.event_type = 'created' AND e.occurred_at >= TIMESTAMPTZ '2025-12-04 23:00:00+00' AND e.occurred_at < TIMESTAMPTZ '2026-12-04 23:00:00+00'",
)
t(
    "python datetime params",
    "SELECT count(*) FROM ticket_events e WHERE e.event_type = 'created' AND e.occurred_at >= $start AND e.occurred_at < $end",
    {
        "start": dt.datetime(2025, 12, 4, 23, tzinfo=dt.UTC),
        "end": dt.datetime(2026, 12, 4, 23, tzinfo=dt.UTC),
    },
)
t("type only", "SELECT count(*) FROM ticket_events e WHERE e.event_type = 'created'")
t("all rows", "SELECT count(*) FROM ticket_events")
t(
    "literal daily 2tz",
    "SELECT epoch(timezone('Europe/Berlin', date_trunc('day', timezone('Europe/Berlin', e.occurred_at)))) b, count(*) FROM ticket_events e WHERE e.event_type = 'created' AND e.occurred_at >= TIMESTAMPTZ '2025-12-04 23:00:00+00' AND e.occurred_at < TIMESTAMPTZ '2026-12-04 23:00:00+00' GROUP BY ALL",
)
print(con.execute("select current_setting('threads'), current_setting('memory_limit')").fetchall())
