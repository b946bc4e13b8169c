"""DuckDB formulations of the one-year daily count, timed on the 1M export (for picking the fairest)."""

import sys
import time

sys.path.insert(0, ".")
from pathlib import Path

from bench.bench_peer import load_duckdb

con, s = load_duckdb(Path("instance/bench/peer-1000000"))
print("load", s)
P = {"start": "2025-12-04T23:00:00+00:00", "end": "2026-12-04T23:00:00+00:00"}
W = "e.event_type = 'created' AND e.occurred_at >= CAST($start AS TIMESTAMPTZ) AND e.occurred_at < CAST($end AS TIMESTAMPTZ)"
variants = {
    "two timezone() calls": f"SELECT epoch(timezone('Europe/Berlin', date_trunc('day', timezone('Europe/Berlin', e.occurred_at)))) b, count(*) FROM ticket_events e WHERE {W} GROUP BY ALL",
    "date_trunc in session zone": f"SELECT epoch(date_trunc('day', e.occurred_at)) b, count(*) FROM ticket_events e WHERE {W} GROUP BY ALL",
    "time_bucket tz": f"SELECT epoch(time_bucket(INTERVAL 1 day, e.occurred_at, 'Europe/Berlin')) b, count(*) FROM ticket_events e WHERE {W} GROUP BY ALL",
    "local date only": f"SELECT CAST(timezone('Europe/Berlin', e.occurred_at) AS DATE) b, count(*) FROM ticket_events e WHERE {W} GROUP BY ALL",
    "truncate after group (per hour)": f"SELECT epoch(timezone('Europe/Berlin', date_trunc('day', timezone('Europe/Berlin', h)))) b, sum(n) FROM (SELECT date_trunc('hour', e.occurred_at) h, count(*) n FROM ticket_events e WHERE {W} GROUP BY ALL) GROUP BY ALL",
    "no bucket (count only)": f"SELECT count(*) FROM ticket_events e WHERE {W}",
}
ref = None
for name, sql in variants.items():
    if name == "date_trunc in session zone":
        con.execute("SET TimeZone = 'Europe/Berlin'")
    rows = con.execute(sql, P).fetchall()
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        con.execute(sql, P).fetchall()
        ts.append((time.perf_counter() - t) * 1000)
    con.execute("SET TimeZone = 'UTC'")
    print(f"{name:35s} {sorted(ts)[1]:8.1f} ms rows={len(rows)} total={sum(r[-1] for r in rows)}")
print(con.execute("SELECT sum(memory_usage_bytes)/2^20 FROM duckdb_memory()").fetchall())
print(
    con.execute("PRAGMA storage_info('ticket_events')").fetchdf().groupby("compression").size()
    if False
    else ""
)
