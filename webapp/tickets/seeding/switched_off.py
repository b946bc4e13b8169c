"""What a seed switches off inside its transaction: insert triggers whose work it does itself, and
nested-loop plans over rows it has just written."""

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


@contextmanager
def nested_loops_off(cur: psycopg.Cursor) -> Iterator[None]:
    """Hash joins only for the statements inside (enable_nestloop off, then back to what it was).

    For statements over rows the seed has just written: with no statistics of them yet, the planner
    takes each aggregate for one row and runs it again for every row of a nested loop (19 s for the
    SLA facts of 5,000 tickets)."""
    cur.execute("SELECT current_setting('enable_nestloop')")
    row = cur.fetchone()
    assert row is not None
    cur.execute("SELECT set_config('enable_nestloop', 'off', true)")
    yield
    cur.execute("SELECT set_config('enable_nestloop', %s, true)", (row[0],))
