"""The solved events of seeded tickets, written in SQL from the status history COPYed with them.

The same definition as tickets.history, set-wise over a range of ticket ids: one per change to a
solved status, each with the hours and the spans in unsolved statuses before it (the history itself
and the other derived events come with the batch's rows: history_rows). A solve is one-touch (valued
100) when at most one public agent reply came at or before it: when the ticket's second such reply,
if any, came after it (a first response counts one touch at most, so alone it never makes two).
"""

from __future__ import annotations

import psycopg

from webapp.tickets.seeding.switched_off import nested_loops_off

_TICKETS = "org_id = %(org_id)s AND ticket_id BETWEEN %(first)s AND %(last)s"

SPANS = f"""
CREATE TEMP TABLE seed_spans ON COMMIT DROP AS
SELECT h.org_id, h.ticket_id, h.status, h.at AS starts, lead(h.at) OVER w AS ends,
       lag(h.status) OVER w AS before, row_number() OVER w AS n
FROM ticket_status_changes h
WHERE h.{_TICKETS}
WINDOW w AS (PARTITION BY h.ticket_id ORDER BY h.at, h.id)
"""

# The ticket's dimensions now are those it had at each solve: a seeded ticket's escalation and
# reassignment come before its first resolution (timeline), and nothing changes them after.
_DIMENSIONS = "t.priority, t.channel, t.category, t.assigned_to"
_INSERT = (
    "INSERT INTO ticket_events (org_id, ticket_id, event_type, occurred_at, status, priority, channel,"
    " category, assigned_to, value, detail)"
)
# An instant as microseconds since the Unix epoch (the solve's spans, as tickets.history writes them).
_US = "CAST(round(extract(epoch FROM {at}) * 1000000) AS bigint)"

SOLVED = f"""
{_INSERT}
SELECT x.org_id, x.ticket_id, 'solved', x.starts, x.status, {_DIMENSIONS},
       CASE WHEN a.second_at IS NULL OR a.second_at > x.starts THEN 100.0 ELSE 0.0 END,
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
LEFT JOIN (
    SELECT r.ticket_id, (array_agg(r.at ORDER BY r.at))[2] AS second_at FROM ticket_replies r
    WHERE r.{_TICKETS} AND r.author = 'agent' AND r.public GROUP BY r.ticket_id
) a ON a.ticket_id = x.ticket_id
WHERE x.status IN ('resolved', 'closed') AND (x.before IS NULL OR x.before IN ('open', 'pending', 'on_hold'))
"""


def derive_seeded(cur: psycopg.Cursor, *, org_id: int, first: int, last: int) -> int:
    """Write the solved events of tickets `first`..`last` of `org_id`; how many that wrote."""
    params = {"org_id": org_id, "first": first, "last": last}
    cur.execute(SPANS, params)
    cur.execute("ANALYZE seed_spans")
    with nested_loops_off(cur):  # the replies were just written
        cur.execute(SOLVED, params)
        written = cur.rowcount
    cur.execute("DROP TABLE seed_spans")
    return written
