"""Ingest through the import job: tickets and events per second, and how soon the rollups are current.

gunicorn (the Procfile's web line) and one Celery worker (its worker line) run against scratch
PostgreSQL and Redis. Each of --requests imports POSTs --batch back-filled tickets (created over the
past --days days, most with a first response, most of those resolved) to /api/v1/tickets/import,
alternately as a JSON array and as CSV, and waits on the WebSocket for the job's job_update
"succeeded". Imports run one at a time, so a rate is one job's: rows over submit-to-succeeded (and
over the worker's started-to-finished). Then analytics_rollup_dirty is polled until no mark is left
in a closed hour (what rollups.pending would return): the time from "succeeded" to that point is the
rollup lag (0 when the rollups were current as the job finished: an import adds its own). At the
end the hourly rollups (grain 0) are checked against plain SQL over the raw events: the rate counts
only if they are exact. Results: bench/results/ingest.json.

    python -m bench.bench_ingest [--requests 4] [--batch 10000] [--days 30]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import math
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import websocket

from bench.common import Stack, platform_stack, print_table, write_results
from webapp.analytics import rollups
from webapp.tickets.fields import TicketCreate

TARGET_TICKETS_PER_S = 20_000
TARGET_LAG_S = 1.0
# The columns of an import CSV: every field a ticket is created with.
FIELDS = tuple(TicketCreate.model_fields)


def tickets(rng: random.Random, n: int, days: int, now: datetime) -> list[dict[str, Any]]:
    """`n` back-filled tickets created in the past `days` days (none in the open hour)."""
    newest = rollups.floor_hour(now) - timedelta(hours=1)
    out = []
    for i in range(n):
        created = newest - timedelta(seconds=rng.uniform(0, days * 86400 - 3600))
        ticket: dict[str, Any] = {
            "subject": f"Imported ticket {i}",
            "priority": rng.choice(("low", "normal", "normal", "high", "urgent")),
            "channel": rng.choice(("email", "chat", "phone", "web", "social", "api")),
            "category": rng.choice(("billing", "bug", "account", "feature", "general")),
            "assigned_to": rng.choice((None, "ana", "ben", "chen", "dara", "eli")),
            "sentiment_score": round(rng.uniform(-1, 1), 2),
            "created_at": created.isoformat(),
            "status": "open",
        }
        if rng.random() < 0.85:
            responded = min(created + timedelta(hours=rng.expovariate(1 / 4)), newest)
            ticket["first_response_at"] = responded.isoformat()
            if rng.random() < 0.8:
                resolved = min(responded + timedelta(hours=rng.expovariate(1 / 24)), newest)
                ticket["resolved_at"] = resolved.isoformat()
                ticket["status"] = rng.choice(("resolved", "closed"))
        out.append(ticket)
    return out


def encode(rows: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """The request body and content type of `rows` as a JSON array or CSV."""
    if fmt == "json":
        return json.dumps(rows).encode(), "application/json"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode(), "text/csv"


def dirty_closed_hours(conn: psycopg.Connection, org_id: int) -> int:
    """Dirty marks of the organization that begin in a closed hour (rollups.pending's rows)."""
    row = conn.execute(
        "SELECT count(*) FROM analytics_rollup_dirty WHERE org_id = %s AND lo < %s",
        (org_id, rollups.floor_hour(datetime.now(UTC))),
    ).fetchone()
    assert row is not None
    return int(row[0])


# Per metric and UTC hour from the raw tables (the metric definitions written out), next to the
# organization's hourly totals (grain 0) in analytics_metrics, for the same four metrics (the rollups
# hold more now: replies, backlog, ...; those are checked by their own tests).
RAW_HOURLY = """
SELECT 'ticket_count', date_trunc('hour', occurred_at, 'UTC'), count(*),
       NULL::float8, NULL::float8, NULL::float8
FROM ticket_events WHERE org_id = %(org)s AND event_type = 'created' GROUP BY 2
UNION ALL SELECT 'response_time', date_trunc('hour', occurred_at, 'UTC'), count(value), sum(value),
       min(value), max(value)
FROM ticket_events WHERE org_id = %(org)s AND event_type = 'first_response' GROUP BY 2
UNION ALL SELECT 'resolution_time', date_trunc('hour', occurred_at, 'UTC'), count(value), sum(value),
       min(value), max(value)
FROM ticket_events WHERE org_id = %(org)s AND event_type = 'resolved' GROUP BY 2
UNION ALL SELECT 'sentiment_score', date_trunc('hour', e.occurred_at, 'UTC'), count(t.sentiment_score),
       sum(t.sentiment_score), min(t.sentiment_score), max(t.sentiment_score)
FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
WHERE e.org_id = %(org)s AND e.event_type = 'created' GROUP BY 2 HAVING count(t.sentiment_score) > 0
"""
# Rows and the imports' deltas not folded into them yet (kept at every dimension: grain 31), added
# as readers add them.
ROLLED_HOURLY = (
    "SELECT metric, bucket_start, sum(count), sum(sum), min(min), max(max) FROM"
    " (SELECT metric, bucket_start, count, sum, min, max FROM analytics_metrics"
    " WHERE org_id = %(org)s AND grain = 0 UNION ALL"
    " SELECT metric, bucket_start, count, sum, min, max FROM analytics_metric_deltas"
    " WHERE org_id = %(org)s AND grain = 31) m"
    " WHERE metric IN ('ticket_count', 'response_time', 'resolution_time', 'sentiment_score')"
    " GROUP BY metric, bucket_start"
)


def rollups_match_raw(conn: psycopg.Connection, org_id: int) -> dict[str, int]:
    """Hourly totals that differ between the rollups and the raw events (closed hours, 0 when exact)."""
    closed = rollups.floor_hour(datetime.now(UTC))
    raw = {(r[0], r[1]): r[2:] for r in conn.execute(RAW_HOURLY, {"org": org_id}) if r[1] < closed}
    rolled = {(r[0], r[1]): r[2:] for r in conn.execute(ROLLED_HOURLY, {"org": org_id}) if r[1] < closed}
    differ = sum(not _same_totals(raw.get(key), rolled.get(key)) for key in raw.keys() | rolled.keys())
    return {"hours": len(raw), "differ": differ}


def _same_totals(raw: tuple[Any, ...] | None, rolled: tuple[Any, ...] | None) -> bool:
    """(count, sum, min, max) equal, sums to 1e-9 (added in another order)."""
    if raw is None or rolled is None:
        return False
    if (raw[0], raw[2], raw[3]) != (rolled[0], rolled[2], rolled[3]):
        return False
    return raw[1] is None or math.isclose(raw[1], rolled[1], rel_tol=1e-9, abs_tol=1e-9)


def import_once(stack: Stack, ws: Any, db: psycopg.Connection, body: bytes, ctype: str) -> dict[str, Any]:
    """POST one import, wait for its succeeded job_update, then for the rollups to be current."""
    headers = {"Authorization": f"Bearer {stack.admin_token}", "Content-Type": ctype}
    # A connection per import: gunicorn closes one kept alive longer than its keepalive while a job runs.
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", "/api/v1/tickets/import", body=body, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    accepted = time.perf_counter()
    conn.close()
    if response.status != 202:
        raise RuntimeError(f"import answered {response.status}: {str(answer)[:500]}")
    job_id = answer["job_id"]
    while True:
        message = json.loads(ws.recv())
        if message["type"] != "job_update" or message["data"].get("job_id") != job_id:
            continue
        state = message["data"]["state"]
        if state == "succeeded":
            succeeded = time.perf_counter()
            result = message["data"]["result"] or {}
            break
        if state in ("failed", "cancelled"):
            raise RuntimeError(f"import {job_id} {state}: {str(message['data'])[:500]}")
    marks_at_success = dirty_closed_hours(db, stack.org_id)
    while dirty_closed_hours(db, stack.org_id):
        if time.perf_counter() - succeeded > 120:
            raise RuntimeError("rollups still not current 120 s after the import finished")
        time.sleep(0.01)
    current = time.perf_counter()
    timing = db.execute(
        "SELECT extract(epoch FROM finished_at - started_at) FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert timing is not None
    return {
        "job_id": job_id,
        "imported": result.get("imported"),
        "events": result.get("events"),
        "submit_s": accepted - started,
        "job_s": succeeded - started,
        "worker_s": float(timing[0]),
        "dirty_marks_at_success": marks_at_success,
        "rollup_lag_s": current - succeeded,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start web and worker, then run the imports one after another."""
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    bodies = []
    for i in range(args.requests):
        fmt = "json" if i % 2 == 0 else "csv"
        bodies.append((fmt, *encode(tickets(rng, args.batch, args.days, now), fmt)))
    limits = {"IMPORT_MAX_ROWS": str(args.batch), "IMPORT_MAX_BYTES": str(max(len(b[1]) for b in bodies) + 1)}
    runs: list[dict[str, Any]] = []
    with platform_stack("bench_ingest", extra_env=limits) as stack:
        worker_command = stack.start_worker()
        web_command = stack.start_web()
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{stack.port}/api/v1/ws/analytics/{stack.org_id}",
            header=[f"Authorization: Bearer {stack.admin_token}"],
            timeout=600,
        )
        try:
            with psycopg.connect(stack.database_url.replace("+psycopg", ""), autocommit=True) as db:
                for fmt, body, ctype in bodies:
                    one = import_once(stack, ws, db, body, ctype)
                    runs.append({"format": fmt, "bytes": len(body), **one})
                    print(
                        f"{fmt:>4}: {one['imported']:,} tickets, {one['events']:,} events"
                        f" in {one['job_s']:.2f}s ({one['imported'] / one['job_s']:,.0f} tickets/s),"
                        f" rollups current {one['rollup_lag_s']:.3f}s after",
                        flush=True,
                    )
                exactness = rollups_match_raw(db, stack.org_id)
        finally:
            ws.close()
    tickets_total = sum(r["imported"] for r in runs)
    events_total = sum(r["events"] for r in runs)
    job_seconds = sum(r["job_s"] for r in runs)
    worker_seconds = sum(r["worker_s"] for r in runs)
    rate = tickets_total / job_seconds
    worst_lag = max(r["rollup_lag_s"] for r in runs)
    return {
        "requests": args.requests,
        "batch": args.batch,
        "days": args.days,
        "web_command": web_command,
        "worker_command": worker_command,
        "runs": runs,
        "tickets": tickets_total,
        "events": events_total,
        "tickets_per_s": rate,
        "events_per_s": events_total / job_seconds,
        "worker_tickets_per_s": tickets_total / worker_seconds,
        "worst_rollup_lag_s": worst_lag,
        "target_tickets_per_s": TARGET_TICKETS_PER_S,
        "target_rollup_lag_s": TARGET_LAG_S,
        "rollup_hours_checked": exactness["hours"],
        "rollup_hours_differing": exactness["differ"],
        "passed_rate": rate >= TARGET_TICKETS_PER_S and not exactness["differ"],
        "passed_lag": worst_lag <= TARGET_LAG_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4, help="imports, alternately JSON and CSV")
    parser.add_argument("--batch", type=int, default=10_000, help="tickets per import (5,000 to 10,000)")
    parser.add_argument(
        "--days", type=int, default=30, help="the tickets' creation spreads over this many days"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = run(args)
    print_table(
        "Imports, one at a time",
        ["format", "tickets", "events", "MB", "submit s", "job s", "worker s", "tickets/s", "lag s"],
        [
            [
                r["format"],
                r["imported"],
                r["events"],
                r["bytes"] / 2**20,
                r["submit_s"],
                r["job_s"],
                r["worker_s"],
                r["imported"] / r["job_s"],
                r["rollup_lag_s"],
            ]
            for r in out["runs"]
        ],
    )
    print(
        f"\n{out['tickets_per_s']:,.0f} tickets/s ({out['events_per_s']:,.0f} events/s) submit to succeeded"
        f" (target >= {TARGET_TICKETS_PER_S:,}: {'pass' if out['passed_rate'] else 'MISS'});"
        f" rollups current at most {out['worst_rollup_lag_s']:.3f}s after a job finished"
        f" (target <= {TARGET_LAG_S}: {'pass' if out['passed_lag'] else 'MISS'});"
        f" hourly rollups vs raw events: {out['rollup_hours_differing']} of {out['rollup_hours_checked']}"
        " hours differ"
    )
    path = write_results("ingest", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
