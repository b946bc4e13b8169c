"""Whether DuckDB prunes row groups by time with bound parameters as with literals (1M export)."""

import sys
import time

sys.path.insert(0, ".")
from pathlib import Path

from bench.bench_peer import load_duckdb

con, _ = load_duckdb(Path("instance/bench/peer-1000000"))
q = "SELECT count(*) FROM ticket_events e WHERE e.event_type = 'created' AND e.occurred_at >= {a} AND e.occurred_at < {b}"
lit = q.format(a="TIMESTAMPTZ '2026-09-05 22:00:00+00'", b="TIMESTAMPTZ '2026-12-04 23:00:00+00'")
par = q.format(a="CAST($start AS TIMESTAMPTZ)", b="CAST($end AS TIMESTAMPTZ)")
P = {"start": "2026-09-05T22:00:00+00:00", "end": "2026-12-04T23:00:00+00:00"}
for name, sql, p in (("literal", lit, None), ("param", par, P), ("literal", lit, None), ("param", par, P)):
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        (con.execute(sql, p) if p else con.execute(sql)).fetchall()
        ts.append((time.perf_counter() - t) * 1000)
    print(name, sorted(ts)[2])
plan = con.execute("EXPLAIN ANALYZE " + par, P).fetchall()[0][1]
print(
    "\n".join(
        l for l in plan.splitlines() if "Filters" in l or "Rows" in l or "TABLE_SCAN" in l or "occurred" in l
    )[:1500]
)
