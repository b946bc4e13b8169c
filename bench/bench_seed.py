"""Seeding throughput: synthetic tickets and their events COPYed into a fresh, migrated database.

Besides the wall-clock rate, the CPU each side spent: the seeding process (generate and format, in
its prefetch thread, and the COPY calls) and the PostgreSQL backend that took the rows (its
/proc/<pid>/stat). They run at the same time, so on an idle machine with a core each the wall rate
is close to the slower side's; on a loaded one the CPU rates still say what each side costs.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import numpy as np
import psycopg

from bench.common import insert_org, print_table, scratch_postgres, write_results
from webapp.tickets import seeding
from webapp.tickets.seeding import load
from webapp.tickets.seeding.arrivals import created_times
from webapp.tickets.seeding.rows import encode_batch

TARGET_TICKETS_PER_S = 50_000


def backend_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` (a PostgreSQL backend on this machine)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def format_only(tickets: int, seed: int, tz: str) -> float:
    """Seconds to generate and format the same rows without a database: the client's share."""
    started = time.perf_counter()
    now_s = int(time.time())
    rng = np.random.default_rng(seed)
    created, offsets = created_times(rng, tickets, now_s, 365, tz)
    for b in range(math.ceil(tickets / load.BATCH_TICKETS)):
        lo, hi = b * load.BATCH_TICKETS, (b + 1) * load.BATCH_TICKETS
        encode_batch(rng, created[lo:hi], offsets[lo:hi], 1 + lo, 1, now_s)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tz", default="Europe/Berlin")
    args = parser.parse_args()

    pg, url = scratch_postgres("bench_seed")
    try:
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            org_id = insert_org(conn, args.tz)
            conn.commit()
            backend = conn.info.backend_pid
            server_cpu = backend_cpu_seconds(backend)
            client_cpu = time.process_time()
            started = time.perf_counter()
            stats = seeding.seed_tickets(
                conn, org_id=org_id, tickets=args.tickets, seed=args.seed, tz=args.tz
            )
            conn.commit()
            seconds = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu
            server_cpu = backend_cpu_seconds(backend) - server_cpu
    finally:
        pg.stop()
    client_seconds = format_only(args.tickets, args.seed, args.tz)

    def rates(tickets: int, events: int, elapsed: float) -> dict[str, Any]:
        return {
            "tickets": tickets,
            "events": events,
            "seconds": elapsed,
            "tickets_per_s": tickets / elapsed,
            "events_per_s": events / elapsed,
        }

    results = {
        "seed_tickets (COPY, committed)": rates(stats.tickets, stats.events, seconds),
        "  its client's CPU": rates(stats.tickets, stats.events, client_cpu),
        "  its server backend's CPU": rates(stats.tickets, stats.events, server_cpu),
        "generate + format only": rates(stats.tickets, stats.events, client_seconds),
    }
    rate = stats.tickets / seconds
    passed = rate >= TARGET_TICKETS_PER_S
    headers = ["run", "tickets", "events", "seconds", "tickets/s", "events/s"]
    print_table(
        f"Seeding {args.tickets:,} tickets ({stats.events / max(stats.tickets, 1):.1f} events each)",
        headers,
        [[name, *r.values()] for name, r in results.items()],
    )
    path = write_results(
        "seed",
        {
            "tickets": args.tickets,
            "seed": args.seed,
            "tz": args.tz,
            "batch_tickets": load.BATCH_TICKETS,
            "results": results,
            "target_tickets_per_s": TARGET_TICKETS_PER_S,
            "passed": passed,
            "load_average": os.getloadavg(),
        },
    )
    verdict = "pass" if passed else "MISS"
    target = f"target >= {TARGET_TICKETS_PER_S:,}: {verdict}"
    print(f"\n{rate:,.0f} tickets/s ({target}); load average {os.getloadavg()}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
