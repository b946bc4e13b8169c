"""Worker time per organization: what its jobs ran, counted in Redis by the minute, and the budget a
new job must fit in.

A job's run is charged to its organization when the run ends, whatever its outcome: the seconds it
held a worker slot (and the database backend working for it), added to the current one-minute
window. A submission is refused while the organization's worker time over the last minute is at
JOB_WORKER_SECONDS_PER_MINUTE or more: the current window plus the share of the previous one still
inside the last minute (a sliding estimate, two keys read in one round trip). So an organization
whose jobs keep a worker busy back to back gets on average no more than its budget of the workers and
the database, whatever the caps on active jobs let it queue; expensive jobs (an exact aggregation
over years, a large export) cost more of it than cheap ones. A run still going is charged when it
ends, so one long job can take an organization over its budget for the minutes after it.
"""

from __future__ import annotations

import redis

from webapp.infra.time_windows import WINDOW_SECONDS, Spent, TimeWindows

__all__ = ["WINDOW_SECONDS", "Spent", "busy", "charge", "demotion_delay", "spent"]

_WINDOWS = TimeWindows("an:jt")


def charge(
    client: redis.Redis, org_id: int, seconds: float, now: float | None = None, started: float | None = None
) -> None:
    """Add `seconds` of worker time to the organization's windows, split between the current one and
    the one before when the run `started` (time.time()) in it (best effort: a Redis that does not
    answer loses the charge, it never fails the job)."""
    _WINDOWS.charge(client, org_id, seconds, now, started)


def busy(org_id: int, threshold: float, now: float | None = None) -> bool:
    """Whether the organization's jobs ran `threshold` seconds or more over the last minute, as far as
    this process's last charge of it told (no round trip). False with a threshold of 0."""
    return _WINDOWS.busy(org_id, threshold, now)


def spent(client: redis.Redis, org_id: int, now: float | None = None, budget: float | None = None) -> Spent:
    """The organization's worker seconds over the last minute (sliding estimate over two windows),
    and the seconds until they fall under `budget` with nothing more charged."""
    return _WINDOWS.spent(client, org_id, now, budget)


def demotion_delay(org_id: int | None, after: float, busy_seconds: float) -> float:
    """Seconds a run keeps its priority: `after`, or none at all while its organization's jobs ran
    `busy_seconds` or more of the last minute (a stream of jobs each shorter than `after` would
    otherwise hold a worker slot and a database backend at full priority throughout)."""
    if org_id is not None and busy(org_id, busy_seconds):
        return 0.0
    return after
