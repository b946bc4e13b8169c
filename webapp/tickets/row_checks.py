"""PostgreSQL's per-row foreign-key checks, switched off for bulk writers that guarantee them already."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import Connection


def skip_row_checks(conn: Connection[Any], tables: Sequence[str]) -> bool:
    """Switch off the per-row foreign-key triggers for the rest of the transaction, where allowed.

    For bulk writers that already guarantee what those triggers check (session_replication_role =
    replica; restore_row_checks sets it back when done). Only a role allowed to set it may, and
    only when `tables` have no triggers of their own, which replica mode would silently skip too
    (triggers enabled ALWAYS, such as the rollup dirty marks, fire in replica mode as well).
    """
    own_triggers = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = ANY(CAST(%s AS regclass[]))"
        " AND NOT tgisinternal AND tgenabled <> 'A'",
        (list(tables),),
    ).fetchone()
    if own_triggers is None or own_triggers[0]:
        return False
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def restore_row_checks(conn: Connection[Any]) -> None:
    """Foreign keys are checked again for the rest of the transaction (after skip_row_checks)."""
    conn.execute("SET LOCAL session_replication_role = origin")
