"""Seeding throughput: synthetic tickets and their events COPYed into a fresh, migrated database."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import psycopg

from bench.common import print_table, scratch_postgres, write_results
from webapp.tickets import seeding
from webapp.tickets.seeding import load
from webapp.tickets.seeding.arrivals import created_times
from webapp.tickets.seeding.rows import encode_batch


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
            row = conn.execute(
                "INSERT INTO organizations (name, timezone) VALUES ('Bench', %s) RETURNING id", (args.tz,)
            ).fetchone()
            assert row is not None
            conn.commit()
            started = time.perf_counter()
            stats = seeding.seed_tickets(
                conn, org_id=row[0], tickets=args.tickets, seed=args.seed, tz=args.tz
            )
            conn.commit()
            seconds = time.perf_counter() - started
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
        "generate + format only": rates(stats.tickets, stats.events, client_seconds),
    }
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
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
