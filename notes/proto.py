"""Prototypes of the read-side fixes, by hand in a kept bench database: build cost, size, read time.

python notes/proto.py SIZE build|read|drop

- cube_hourly: one row per metric, UTC hour and (status, priority, channel) with count, sum, min,
  max and a sketch: any filter or group-by on those three small dimensions is a sum of its rows.
- cube_daily / total_daily: the same cube, and the organization totals (grain 0), per local day of
  the organization's zone, built on top of the hourly rows.
- ticket_day_counts: per local creation day and current value of each dimension, the tickets (what
  distributions read), kept by a trigger on tickets in production.
- tickets_cover: a covering index of tickets for distribution, backlog and SLA reads.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, ".")
import psycopg

from devstack.postgres import EmbeddedPostgres
from webapp.analytics import sketch

size, action = sys.argv[1], sys.argv[2]
pg = EmbeddedPostgres(Path(f"instance/bench/postgres-bench_peer_{size}"), fast_unsafe=True)
pg.start()
pg.wait_ready()
conn = psycopg.connect(
    f"host=127.0.0.1 port={pg.port} user=postgres dbname=bench_peer_{size}", autocommit=True
)
TZ = "Europe/Berlin"
KEY = sketch.sql_key("e.value")
METRICS = "(VALUES ('ticket_count', 'created'), ('response_time', 'first_response'), ('resolution_time', 'resolved')) AS m(metric, event_type)"


def timed(label, sql, params=None):
    t = time.perf_counter()
    cur = conn.execute(sql, params)
    ms = (time.perf_counter() - t) * 1000
    print(f"  {label}: {ms:,.0f} ms")
    return cur


if action == "build":
    conn.execute("SET work_mem = '256MB'")
    timed(
        "cube_hourly",
        f"""CREATE TABLE proto_cube_hourly AS
      WITH cells AS (SELECT m.metric, date_trunc('hour', e.occurred_at, 'UTC') AS h, e.status, e.priority, e.channel,
        {KEY} AS k, count(*) AS events, count(e.value) AS n, sum(e.value) AS s, min(e.value) AS lo, max(e.value) AS hi
        FROM ticket_events e JOIN {METRICS} ON e.event_type = m.event_type GROUP BY 1, 2, 3, 4, 5, 6)
      SELECT metric, h AS bucket_start, status, priority, channel,
        CASE WHEN metric = 'ticket_count' THEN sum(events) ELSE sum(n) END AS count, sum(s) AS sum, min(lo) AS min, max(hi) AS max,
        string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea) FILTER (WHERE n > 0) AS sketch
      FROM cells GROUP BY 1, 2, 3, 4, 5""",
    )
    timed(
        "cube_hourly index",
        "CREATE INDEX ON proto_cube_hourly (metric, bucket_start) INCLUDE (status, priority, channel, count, sum, min, max)",
    )
    timed(
        "cube_daily",
        f"""CREATE TABLE proto_cube_daily AS
      WITH pairs AS (SELECT metric, date_trunc('day', bucket_start, '{TZ}') AS day, status, priority, channel,
          count, sum, min, max, get_byte(sketch, i) * 256 + get_byte(sketch, i + 1) - CASE WHEN get_byte(sketch, i) >= 128 THEN 65536 ELSE 0 END AS k,
          ((CAST(get_byte(sketch, i + 2) AS bigint) * 256 + get_byte(sketch, i + 3)) * 256 + get_byte(sketch, i + 4)) * 256 + get_byte(sketch, i + 5) AS n
        FROM proto_cube_hourly LEFT JOIN LATERAL generate_series(0, length(sketch) - 6, 6) AS i ON true),
      folded AS (SELECT metric, day, status, priority, channel, k, sum(n) AS n FROM pairs WHERE k IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6),
      sketches AS (SELECT metric, day, status, priority, channel,
          string_agg(int2send(CAST(k AS int2)) || int4send(CAST(n AS int4)), ''::bytea ORDER BY k) AS sketch FROM folded GROUP BY 1, 2, 3, 4, 5),
      stats AS (SELECT metric, date_trunc('day', bucket_start, '{TZ}') AS day, status, priority, channel,
          sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max FROM proto_cube_hourly GROUP BY 1, 2, 3, 4, 5)
      SELECT s.*, k.sketch FROM stats s LEFT JOIN sketches k USING (metric, day, status, priority, channel)""",
    )
    timed(
        "cube_daily index",
        "CREATE INDEX ON proto_cube_daily (metric, day) INCLUDE (status, priority, channel, count, sum, min, max)",
    )
    timed(
        "total_daily",
        """CREATE TABLE proto_total_daily AS SELECT metric, day, sum(count) AS count, sum(sum) AS sum,
        min(min) AS min, max(max) AS max FROM proto_cube_daily GROUP BY 1, 2""",
    )
    timed(
        "total_daily index", "CREATE INDEX ON proto_total_daily (metric, day) INCLUDE (count, sum, min, max)"
    )
    timed(
        "ticket_day_counts",
        f"""CREATE TABLE proto_ticket_day_counts AS
      SELECT date_trunc('day', created_at, '{TZ}') AS day, GROUPING(status, priority, channel, category, assigned_to) AS g,
        status, priority, channel, category, assigned_to, count(*) AS n
      FROM tickets GROUP BY GROUPING SETS ((1, status), (1, priority), (1, channel), (1, category), (1, assigned_to))""",
    )
    timed(
        "ticket_day_counts index",
        "CREATE INDEX ON proto_ticket_day_counts (day) INCLUDE (g, status, priority, channel, category, assigned_to, n)",
    )
    timed(
        "tickets_cover",
        "CREATE INDEX proto_tickets_cover ON tickets (org_id, created_at) INCLUDE (status, priority, channel, category, assigned_to, first_response_at, resolved_at)",
    )
    timed(
        "tickets_unresolved (partial)",
        "CREATE INDEX proto_tickets_unresolved ON tickets (org_id, created_at) INCLUDE (status, priority)"
        " WHERE status NOT IN ('resolved', 'closed')",
    )
    timed(
        "tickets_unanswered (partial)",
        "CREATE INDEX proto_tickets_open_sla ON tickets (org_id, created_at) INCLUDE (priority, first_response_at, resolved_at)"
        " WHERE first_response_at IS NULL OR resolved_at IS NULL",
    )
    timed(
        "sla_day",
        f"""CREATE TABLE proto_sla_day AS
      SELECT date_trunc('day', t.created_at, '{TZ}') AS day, t.priority,
        count(*) FILTER (WHERE t.first_response_at <= t.created_at + s.fr) AS fr_met,
        count(*) FILTER (WHERE t.first_response_at > t.created_at + s.fr) AS fr_late,
        count(*) FILTER (WHERE t.resolved_at <= t.created_at + s.res) AS res_met,
        count(*) FILTER (WHERE t.resolved_at > t.created_at + s.res) AS res_late
      FROM tickets t JOIN (VALUES ('urgent', interval '1h', interval '4h'), ('high', interval '4h', interval '24h'),
        ('normal', interval '8h', interval '48h'), ('low', interval '24h', interval '120h')) s(priority, fr, res) ON s.priority = t.priority
      GROUP BY 1, 2""",
    )
    timed(
        "sla_day index",
        "CREATE INDEX ON proto_sla_day (day) INCLUDE (priority, fr_met, fr_late, res_met, res_late)",
    )
    timed("vacuum analyze", "VACUUM ANALYZE")
    for t in (
        "proto_cube_hourly",
        "proto_cube_daily",
        "proto_total_daily",
        "proto_ticket_day_counts",
        "proto_sla_day",
        "proto_tickets_cover",
        "proto_tickets_unresolved",
        "proto_tickets_open_sla",
    ):
        n = (
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            if t.startswith("proto_") and "tickets_" not in t
            else "-"
        )
        print(
            f"  {t}: rows {n}, {conn.execute('SELECT pg_size_pretty(pg_total_relation_size(%s))', (t,)).fetchone()[0]}"
        )
elif action == "drop":
    for t in (
        "proto_cube_hourly",
        "proto_cube_daily",
        "proto_total_daily",
        "proto_ticket_day_counts",
        "proto_sla_day",
    ):
        conn.execute(f"DROP TABLE IF EXISTS {t}")
    for i in ("proto_tickets_cover", "proto_tickets_unresolved", "proto_tickets_open_sla"):
        conn.execute(f"DROP INDEX IF EXISTS {i}")
elif action == "read":
    import json
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    facts = json.loads(Path(f"instance/bench/peer-{size}/setup.json").read_text())
    tz = ZoneInfo(TZ)
    end_day = datetime.fromisoformat(facts["now"]).astimezone(tz).date() + timedelta(days=1)

    def mid(d):
        return datetime.combine(d, datetime.min.time(), tz)

    def win(days):
        return {"start": mid(end_day - timedelta(days=days)), "end": mid(end_day)}

    two = "AND priority = ANY('{high,urgent}') AND channel = ANY('{email}')"
    one = "AND priority = ANY('{high,urgent}')"

    def bench(label, sql, params, after=None):
        conn.execute(sql, params).fetchall()
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()[0][0]
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            rows = conn.execute(sql, params).fetchall()
            if after:
                after(rows)
            samples.append((time.perf_counter() - t) * 1000)
        top = plan["Plan"]
        buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
        print(f"  {label:58s} {statistics.median(samples):8.1f} ms  rows {len(rows):6d}  buffers {buffers}")
        return rows

    def quantiles(rows):  # what the platform does per cell with the sketches the statement returns
        for row in rows:
            sketch.quantiles(
                [bytes(row[-1])] if row[-1] else [], [0.5, 0.95, 0.99], low=row[-3], high=row[-2]
            )

    series_daily = "SELECT day, sum(count), sum(sum), min(min), max(max) FROM proto_cube_daily WHERE metric = %(metric)s AND day >= %(start)s AND day < %(end)s {f} GROUP BY day"
    series_hourly = "SELECT bucket_start, sum(count), sum(sum), min(min), max(max) FROM proto_cube_hourly WHERE metric = %(metric)s AND bucket_start >= %(start)s AND bucket_start < %(end)s {f} GROUP BY bucket_start"
    print("series from the cube")
    for metric in ("ticket_count", "response_time"):
        bench(
            f"1y daily {metric}, two filters (daily cube)",
            series_daily.format(f=two),
            {**win(365), "metric": metric},
        )
        bench(
            f"1y daily {metric}, one filter (daily cube)",
            series_daily.format(f=one),
            {**win(365), "metric": metric},
        )
        bench(
            f"1y daily {metric}, unfiltered (daily totals)",
            "SELECT day, count, sum, min, max FROM proto_total_daily WHERE metric = %(metric)s AND day >= %(start)s AND day < %(end)s",
            {**win(365), "metric": metric},
        )
        bench(
            f"90d hourly {metric}, two filters (hourly cube)",
            series_hourly.format(f=two),
            {**win(90), "metric": metric},
        )
        bench(
            f"90d hourly {metric}, one filter (hourly cube)",
            series_hourly.format(f=one),
            {**win(90), "metric": metric},
        )
    print("percentiles from daily cube sketches (SQL + Python quantiles)")
    pct = (
        "SELECT metric, {g} sum(count), sum(sum), min(min), max(max), string_agg(sketch, ''::bytea) FROM proto_cube_daily"
        " WHERE metric IN ('response_time', 'resolution_time') AND day >= %(start)s AND day < %(end)s GROUP BY metric {gb}"
    )
    bench(
        "90d by channel x priority, p50/p95/p99",
        pct.format(g="channel, priority,", gb=", channel, priority"),
        win(90),
        quantiles,
    )
    bench("90d by priority, p50/p95/p99", pct.format(g="priority,", gb=", priority"), win(90), quantiles)
    bench("30d overall (performance), p50/p95/p99", pct.format(g="", gb=""), win(30), quantiles)
    print("tickets: distributions, backlog, SLA")
    bench(
        "distribution category 90d (day counts)",
        "SELECT category, sum(n) FROM proto_ticket_day_counts WHERE day >= %(start)s AND day < %(end)s AND g = 29 GROUP BY category",
        win(90),
    )
    bench(
        "distribution category 90d (covering index)",
        "SELECT category, count(*) FROM tickets WHERE org_id = 1 AND created_at >= %(start)s AND created_at < %(end)s GROUP BY category",
        win(90),
    )
    bench(
        "distribution status 30d (covering index)",
        "SELECT status, count(*) FROM tickets WHERE org_id = 1 AND created_at >= %(start)s AND created_at < %(end)s GROUP BY status",
        win(30),
    )
    bench(
        "backlog (covering index)",
        "SELECT status, count(*) FROM tickets WHERE org_id = 1 AND created_at < %(end)s AND NOT (status = ANY('{resolved,closed}')) GROUP BY status",
        win(30),
    )
    sla = (
        "SELECT t.priority, count(*) FILTER (WHERE t.first_response_at <= t.created_at + s.fr) AS a,"
        " count(*) FILTER (WHERE t.first_response_at > t.created_at + s.fr OR (t.first_response_at IS NULL AND t.created_at + s.fr < now())) AS b,"
        " count(*) FILTER (WHERE t.resolved_at <= t.created_at + s.res) AS c,"
        " count(*) FILTER (WHERE t.resolved_at > t.created_at + s.res OR (t.resolved_at IS NULL AND t.created_at + s.res < now())) AS d"
        " FROM tickets t JOIN (VALUES ('urgent', interval '1h', interval '4h'), ('high', interval '4h', interval '24h'),"
        " ('normal', interval '8h', interval '48h'), ('low', interval '24h', interval '120h')) s(priority, fr, res) ON s.priority = t.priority"
        " WHERE t.org_id = 1 AND t.created_at >= %(start)s AND t.created_at < %(end)s GROUP BY t.priority"
    )
    bench("SLA 30d (covering index)", sla, win(30))
    bench(
        "backlog (partial index of unresolved tickets)",
        "SELECT status, count(*) FROM tickets WHERE org_id = 1 AND created_at < %(end)s AND status NOT IN ('resolved', 'closed') GROUP BY status",
        win(30),
    )
    sla_fast = (
        "SELECT priority, sum(fr_met), sum(fr_late), sum(res_met), sum(res_late), 0 AS open FROM proto_sla_day WHERE day >= %(start)s AND day < %(end)s GROUP BY priority"
        " UNION ALL SELECT t.priority, 0, 0, 0, 0, count(*) FROM tickets t WHERE t.org_id = 1 AND t.created_at >= %(start)s AND t.created_at < %(end)s"
        " AND (t.first_response_at IS NULL OR t.resolved_at IS NULL) GROUP BY t.priority"
    )
    bench("SLA 30d (day outcomes + open tickets by partial index)", sla_fast, win(30))
    conn.execute("SET max_parallel_workers_per_gather = 2")
    bench("SLA 30d (covering index, 2 parallel workers)", sla, win(30))
    bench(
        "distribution category 90d (covering index, parallel)",
        "SELECT category, count(*) FROM tickets WHERE org_id = 1 AND created_at >= %(start)s AND created_at < %(end)s GROUP BY category",
        win(90),
    )
