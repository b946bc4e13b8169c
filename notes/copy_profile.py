"""Server CPU of COPYing the same seeded events into ticket_events-like tables with parts removed.
python notes/copy_profile.py N (tickets)"""

import math
import os
import sys
import time

sys.path.insert(0, ".")
import numpy as np
import psycopg

from bench.common import scratch_postgres
from webapp.tickets import seeding

n = int(sys.argv[1])
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICKS


now_s = int(time.time())
created, off = seeding._created_times(np.random.default_rng(0), n, now_s, 365, "Europe/Berlin")
batches = []
for b in range(math.ceil(n / seeding.BATCH_TICKETS)):
    lo, hi = b * seeding.BATCH_TICKETS, min(n, (b + 1) * seeding.BATCH_TICKETS)
    t, e, k = seeding._batch(np.random.default_rng(b), created[lo:hi], off[lo:hi], 1 + lo, 1, now_s)
    batches.append((t, e))
events = sum(e.count(b"\n") for _, e in batches)
if "--sorted" in sys.argv:  # each batch's events in (event_type, occurred_at) order, as the index keeps them

    def by_time(buf):
        lines = buf.split(b"\n")[:-1]
        lines.sort(key=lambda l: (l.split(b"\t", 4)[2], l.split(b"\t", 4)[3]))
        return b"\n".join(lines) + b"\n"

    batches = [(t, by_time(e)) for t, e in batches]
pg, url = scratch_postgres("peer_copyprof")
try:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (name, timezone) VALUES ('S', 'UTC')")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for t, _ in batches:
            with conn.cursor().copy(seeding.TICKET_COPY) as c:
                c.write(t)
        variants = {
            "ticket_events as is": ("ticket_events", None),
            "ticket_events, dirty-mark trigger off": (
                "ticket_events",
                "ALTER TABLE ticket_events DISABLE TRIGGER analytics_events_inserted",
            ),
            "ticket_events, trigger off, no ix_ indexes": (
                "ticket_events",
                "DROP INDEX ix_ticket_events_org_occurred, ix_ticket_events_org_type_occurred, ix_ticket_events_ticket",
            ),
            "no secondary indexes": (
                "v1",
                "CREATE TABLE v1 (LIKE ticket_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS); ALTER TABLE v1 ADD PRIMARY KEY (id)",
            ),
            "no indexes at all": (
                "v2",
                "CREATE TABLE v2 (LIKE ticket_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)",
            ),
            "no indexes, detail as text": (
                "v3",
                "CREATE TABLE v3 (LIKE ticket_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS); ALTER TABLE v3 ALTER detail TYPE text",
            ),
            "no indexes, detail text, no CHECKs": (
                "v4",
                "CREATE TABLE v4 (LIKE ticket_events INCLUDING DEFAULTS INCLUDING IDENTITY); ALTER TABLE v4 ALTER detail TYPE text",
            ),
        }
        for name, (table, ddl) in variants.items():
            if ddl:
                conn.execute(ddl)
            conn.execute("BEGIN")
            conn.execute("SET LOCAL session_replication_role = replica")  # as the seed: FK checks off
            wall, cpu = time.perf_counter(), backend_cpu(pid)
            for _, e in batches:
                with conn.cursor().copy(seeding.EVENT_COPY.replace("ticket_events", table)) as c:
                    c.write(e)
            conn.execute("COMMIT")
            used = backend_cpu(pid) - cpu
            print(
                f"{name:38s} server CPU {used:5.2f} s = {used / events * 1e6:5.1f} us/event, {events / used:,.0f} events/s; wall {time.perf_counter() - wall:5.1f} s"
            )
finally:
    pg.stop()
