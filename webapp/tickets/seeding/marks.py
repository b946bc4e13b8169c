"""The seed's dirty rollup hours: one mark per rolled event type over the whole seeded range.

The insert trigger on ticket_events groups every COPYed batch's events by hour to mark the hours
they touch; for a seed that is a tenth of the server's work, and a seed spanning more than 64 hours
ends up with one range per event type anyway. The seed suppresses the trigger's marking for its
statements and marks each rolled event type from its first ticket's creation hour to the hour of
`now` (a superset of the hours its events touch: a dirty hour is only read raw, then rebuilt).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from webapp.analytics.rollups import MAINTAINED_SETTING, ROLLED_EVENT_TYPES

MARK_RANGE = """
INSERT INTO analytics_rollup_dirty (org_id, event_type, lo, hi)
SELECT %(org_id)s, event_type, date_trunc('hour', to_timestamp(%(lo)s), 'UTC'),
       date_trunc('hour', to_timestamp(%(hi)s), 'UTC') + interval '1 hour'
FROM unnest(CAST(%(types)s AS text[])) AS event_type
"""


@contextmanager
def hours_marked_once(cur: psycopg.Cursor, *, org_id: int, first_s: int, last_s: int) -> Iterator[None]:
    """Inside: events inserted mark no hours. After: every rolled event type is marked dirty over
    [`first_s`, `last_s`] (epoch seconds), widened to whole UTC hours. The setting returns to what
    it was (transaction-local, so a rollback undoes both)."""
    cur.execute("SELECT current_setting(%s, true)", (MAINTAINED_SETTING,))
    row = cur.fetchone()
    previous = (row[0] if row else None) or "off"
    cur.execute("SELECT set_config(%s, 'on', true)", (MAINTAINED_SETTING,))
    yield
    cur.execute("SELECT set_config(%s, %s, true)", (MAINTAINED_SETTING, previous))
    cur.execute(
        MARK_RANGE,
        {"org_id": org_id, "lo": first_s, "hi": last_s, "types": list(ROLLED_EVENT_TYPES)},
    )
