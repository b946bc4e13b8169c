"""Where a seed's time goes: client CPU (generate + format), the server backend's CPU, and wall time,
as is and with the events' secondary indexes built after the COPY. python notes/seed_profile.py N"""

import os
import sys
import time

sys.path.insert(0, ".")
import psycopg

from bench.common import scratch_postgres
from webapp.tickets import seeding

n = int(sys.argv[1])
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


pg, url = scratch_postgres("peer_seedprof")
try:
    for variant in ("as is", "indexes after"):
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("TRUNCATE tickets, ticket_events, analytics_rollup_dirty CASCADE")
            org = conn.execute(
                "INSERT INTO organizations (name, timezone) VALUES ('S', 'Europe/Berlin') RETURNING id"
            ).fetchone()[0]
            defs = []
            if variant == "indexes after":
                defs = [
                    r[0]
                    for r in conn.execute(
                        "SELECT indexdef FROM pg_indexes WHERE tablename = 'ticket_events' AND indexname LIKE 'ix_%'"
                    )
                ]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'ticket_events' AND indexname LIKE 'ix_%'"
                ).fetchall():
                    conn.execute(f"DROP INDEX {r[0]}")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            conn.autocommit = False
            wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(pid)
            stats = seeding.seed_tickets(conn, org_id=org, tickets=n, seed=1, tz="Europe/Berlin")
            conn.commit()
            conn.autocommit = True
            copy = (time.perf_counter() - wall, time.process_time() - cpu, backend_cpu(pid) - server)
            wall2, server2 = time.perf_counter(), backend_cpu(pid)
            for d in defs:
                conn.execute(d)
            build = (time.perf_counter() - wall2, backend_cpu(pid) - server2)
            total_wall = copy[0] + build[0]
            print(
                f"{variant:14s} seed wall {copy[0]:6.1f} s (client CPU {copy[1]:5.1f} s, server CPU {copy[2]:5.1f} s);"
                f" index build wall {build[0]:5.1f} s (server CPU {build[1]:5.1f} s); {n / total_wall:,.0f} tickets/s wall,"
                f" {n / max(copy[1], copy[2] + build[1]):,.0f} tickets/s if client and server each had a core"
            )
finally:
    pg.stop()
