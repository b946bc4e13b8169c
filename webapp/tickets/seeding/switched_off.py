"""Insert triggers a seed does the work of itself, switched off inside its transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg


@contextmanager
def switched_off(cur: psycopg.Cursor, triggers: Sequence[tuple[str, str]]) -> Iterator[bool]:
    """Switch the (table, trigger) pairs off for the statements inside, if every one is on (enabled
    ALWAYS, as the migrations leave them) and the role may alter their tables; yields whether it did,
    that is whether the caller must do their work. They are enabled ALWAYS again after. Transactional:
    a rollback undoes both, and other sessions' writes wait for the tables' locks until the commit."""
    enabled = 0
    for table, trigger in triggers:
        cur.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgrelid = CAST(%s AS regclass) AND tgname = %s",
            (table, trigger),
        )
        row = cur.fetchone()
        enabled += row is not None and row[0] == "A"
    switched = False
    if triggers and enabled == len(triggers):
        try:
            with cur.connection.transaction():
                for table, trigger in triggers:
                    cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
            switched = True
        except psycopg.errors.InsufficientPrivilege:
            switched = False
    yield switched
    if switched:
        for table, trigger in triggers:
            cur.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
