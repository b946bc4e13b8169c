"""An organization's share of the workers: at most JOB_MAX_RUNNING_PER_ORG of its jobs run at once.

A running job holds one of its organization's share slots: a session advisory lock (org_id, -1 - i)
on the connection that holds its run lock. A dead worker's slot goes with its connection, and two
deliveries cannot both take the last slot: the lock decides, not a count each read before either ran.
(Submissions lock (org_id, n) with n >= 0, so the keys never meet.)
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection


def _key(slot: int) -> int:
    return -1 - slot


def take_slot(conn: Connection, org_id: int, cap: int) -> int | None:
    """The slot this connection now holds for the organization, or None when all `cap` are held."""
    for slot in range(cap):
        if conn.execute(select(func.pg_try_advisory_lock(org_id, _key(slot)))).scalar():
            return slot
    return None


def release_slot(conn: Connection, org_id: int, slot: int) -> None:
    """Give the slot back (ending the connection gives it back too)."""
    conn.execute(select(func.pg_advisory_unlock(org_id, _key(slot))))
