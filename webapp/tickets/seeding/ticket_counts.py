"""The distribution counts of a seed's tickets, written already summed instead of by the trigger.

The tickets' insert trigger (migration 0011) unpivots every COPYed ticket into five (field, value)
rows and groups them by UTC creation hour: for a seed, a fifth of the server's work. The seed knows
each ticket's final field values, so it sums them per batch in numpy and COPYs the same rows
(org_id, hour, field, value, count: value NULL for an unassigned ticket) while that trigger is
switched off in its transaction. Where the seed's role may not alter the table, the trigger stays
on and the seed writes none.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
import psycopg

from webapp.tickets.seeding import copy_text as text
from webapp.tickets.seeding.switched_off import switched_off

COUNT_COPY = "COPY analytics_ticket_counts (org_id, hour, field, value, count) FROM STDIN"
TRIGGER = "analytics_tickets_inserted"


def counts_text(
    created: np.ndarray, fields: dict[str, tuple[np.ndarray, text.Vocabulary]], org_id: int
) -> bytes:
    """COPY rows of analytics_ticket_counts for tickets created at `created` (epoch seconds) whose
    fields hold `fields` (name: codes and their vocabulary)."""
    hours = created // 3600
    first = int(hours.min()) if len(hours) else 0
    parts: list[bytes] = []
    for name, (codes, vocabulary) in fields.items():
        size = len(vocabulary.lengths)
        keys, counts = np.unique((hours - first) * size + codes, return_counts=True)
        parts.append(
            text.encode(
                [
                    [text.const(str(org_id), len(keys))],
                    [text.timestamps((keys // size + first) * 3600)],
                    [text.const(name, len(keys))],
                    [vocabulary.column(keys % size)],
                    [text.ints(counts)],
                ]
            )
        )
    return b"".join(parts)


def counted_by_seed(cur: psycopg.Cursor) -> AbstractContextManager[bool]:
    """Switch the tickets' insert count trigger off for the statements inside, if it is on (enabled
    ALWAYS, as migration 0011 leaves it) and the role may; yields whether the seed must write the
    counts. The trigger is enabled ALWAYS again after (transactional: a rollback undoes both)."""
    return switched_off(cur, [("tickets", TRIGGER)])
