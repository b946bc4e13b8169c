"""The status history and derived events of seeded tickets, written in SQL from what was COPYed.

The same definitions as tickets.history, set-wise over a range of ticket ids: the history is the
status each created, status_changed and resolved event carries (repeats dropped); backlog steps and
solves follow from it (each solve with its spans in unsolved statuses); next replies from the public
replies; the rated event from the rating.
"""

from __future__ import annotations

import psycopg

_TICKETS = "org_id = %(org_id)s AND ticket_id BETWEEN %(first)s AND %(last)s"

HISTORY = f"""
INSERT INTO ticket_status_changes (org_id, ticket_id, status, at)
SELECT org_id, ticket_id, status, at FROM (
    SELECT org_id, ticket_id, status, at, n,
           lag(status) OVER (PARTITION BY ticket_id ORDER BY at, n) AS before
    FROM (
        SELECT e.org_id, e.ticket_id, e.occurred_at AS at, e.id AS n,
               CASE WHEN e.event_type = 'status_changed' THEN e.detail->>'to' ELSE e.status END AS status
        FROM ticket_events e
        WHERE e.{_TICKETS}
          AND e.event_type IN ('created', 'status_changed', 'resolved')
    ) raw
) h
WHERE before IS NULL OR before <> status
ORDER BY ticket_id, at, n
"""

SPANS = f"""
CREATE TEMP TABLE seed_spans ON COMMIT DROP AS
SELECT h.org_id, h.ticket_id, h.status, h.at AS starts, lead(h.at) OVER w AS ends,
       lag(h.status) OVER w AS before, row_number() OVER w AS n
FROM ticket_status_changes h
WHERE h.{_TICKETS}
WINDOW w AS (PARTITION BY h.ticket_id ORDER BY h.at, h.id)
"""

_DIMENSIONS = "t.priority, t.channel, t.category, t.assigned_to"
_INSERT = (
    "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,"
    " category, assigned_to, value, detail)"
)
# The status a ticket had at an instant (the last history entry at or before it, else the first).
_STATUS_AT = """coalesce(
    (SELECT s.status FROM seed_spans s WHERE s.ticket_id = {ticket} AND s.starts <= {at}
     ORDER BY s.n DESC LIMIT 1),
    (SELECT s.status FROM seed_spans s WHERE s.ticket_id = {ticket} AND s.n = 1))"""

# An instant as microseconds since the Unix epoch (the solve's spans, as tickets.history writes them).
_US = "CAST(round(extract(epoch FROM {at}) * 1000000) AS bigint)"

BACKLOG = f"""
{_INSERT}
SELECT s.org_id, s.ticket_id, 'backlog', step.at, s.status, {_DIMENSIONS}, step.delta, NULL
FROM seed_spans s
JOIN tickets t ON t.id = s.ticket_id
CROSS JOIN LATERAL (VALUES (s.starts, 1.0), (s.ends, -1.0)) AS step(at, delta)
WHERE s.status IN ('open', 'pending', 'on_hold') AND step.at IS NOT NULL
"""

SOLVED = f"""
{_INSERT}
SELECT x.org_id, x.ticket_id, 'solved', x.starts, x.status, {_DIMENSIONS},
       CASE WHEN greatest(
           (SELECT count(*) FROM ticket_replies r WHERE r.ticket_id = x.ticket_id AND r.author = 'agent'
              AND r.public AND r.at <= x.starts),
           CASE WHEN t.first_response_at <= x.starts THEN 1 ELSE 0 END) <= 1 THEN 100.0 ELSE 0.0 END,
       jsonb_build_object('open', x.open_h, 'pending', x.pending_h, 'on_hold', x.on_hold_h, 'spans',
           (SELECT coalesce(jsonb_agg(el ORDER BY i), '[]'::jsonb)
            FROM jsonb_array_elements(x.spans) WITH ORDINALITY AS a(el, i)
            WHERE CAST(el->>1 AS bigint) < {_US.format(at="x.starts")}))
FROM (
    SELECT s.org_id, s.ticket_id, s.status, s.starts, s.before,
           jsonb_agg(jsonb_build_array(s.status, {_US.format(at="s.starts")}, {_US.format(at="s.ends")}))
               FILTER (WHERE s.status IN ('open', 'pending', 'on_hold')) OVER w AS spans,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'open')
               OVER w, 0) AS open_h,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'pending')
               OVER w, 0) AS pending_h,
           coalesce(sum(extract(epoch FROM s.ends - s.starts) / 3600.0) FILTER (WHERE s.status = 'on_hold')
               OVER w, 0) AS on_hold_h
    FROM seed_spans s
    WINDOW w AS (PARTITION BY s.ticket_id ORDER BY s.n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
) x
JOIN tickets t ON t.id = x.ticket_id
WHERE x.status IN ('resolved', 'closed') AND (x.before IS NULL OR x.before IN ('open', 'pending', 'on_hold'))
"""

# A pair: an agent reply after an earlier one, started by the first customer reply between them.
NEXT_REPLY = f"""
{_INSERT}
SELECT p.org_id, p.ticket_id, 'next_reply', p.at, {_STATUS_AT.format(ticket="p.ticket_id", at="p.at")},
       {_DIMENSIONS}, extract(epoch FROM p.at - p.asked) / 3600.0, NULL
FROM (
    SELECT a.org_id, a.ticket_id, a.at,
           (SELECT min(c.at) FROM ticket_replies c WHERE c.ticket_id = a.ticket_id AND c.public
              AND c.author = 'customer' AND (c.at, c.id) > (a.before_at, a.before_id)
              AND (c.at, c.id) < (a.at, a.id)) AS asked
    FROM (
        SELECT r.org_id, r.ticket_id, r.at, r.id,
               lag(r.at) OVER w AS before_at, lag(r.id) OVER w AS before_id
        FROM ticket_replies r
        WHERE r.{_TICKETS} AND r.public AND r.author = 'agent'
        WINDOW w AS (PARTITION BY r.ticket_id ORDER BY r.at, r.id)
    ) a
    WHERE a.before_at IS NOT NULL
) p
JOIN tickets t ON t.id = p.ticket_id
WHERE p.asked IS NOT NULL
"""

RATED = f"""
{_INSERT}
SELECT g.org_id, g.ticket_id, 'rated', g.at, {_STATUS_AT.format(ticket="g.ticket_id", at="g.at")},
       {_DIMENSIONS}, CASE WHEN g.rating >= 4 THEN 100.0 ELSE 0.0 END, NULL
FROM ticket_ratings g
JOIN tickets t ON t.id = g.ticket_id
WHERE g.{_TICKETS}
"""


def derive_seeded(cur: psycopg.Cursor, *, org_id: int, first: int, last: int) -> int:
    """Write the status history and derived events of tickets `first`..`last` of `org_id`; how many
    events that wrote."""
    params = {"org_id": org_id, "first": first, "last": last}
    cur.execute(HISTORY, params)
    cur.execute(SPANS, params)
    cur.execute("CREATE INDEX ON seed_spans (ticket_id, n)")
    cur.execute("ANALYZE seed_spans")
    written = 0
    for statement in (BACKLOG, SOLVED, NEXT_REPLY, RATED):
        cur.execute(statement, params)
        written += cur.rowcount
    cur.execute("DROP TABLE seed_spans")
    return written
