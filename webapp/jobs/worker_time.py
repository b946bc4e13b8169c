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

import logging
import math
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def _key(org_id: int, index: int) -> str:
    return f"an:jt:{org_id}:{index}"


def _window(now: float | None) -> tuple[int, float]:
    """The index of the one-minute window holding `now` (default: the time now), and the share of
    the previous window still inside the last minute."""
    moment = time.time() if now is None else now
    index = int(moment // WINDOW_SECONDS)
    return index, 1 - (moment - index * WINDOW_SECONDS) / WINDOW_SECONDS


def charge(client: redis.Redis, org_id: int, seconds: float, now: float | None = None) -> None:
    """Add `seconds` of worker time to the organization's current window (best effort: a Redis
    that does not answer loses the charge, it never fails the job)."""
    if seconds <= 0:
        return
    index, _ = _window(now)
    key = _key(org_id, index)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incrbyfloat(key, round(seconds, 6))
        pipe.expire(key, 3 * WINDOW_SECONDS)
        total, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("worker time of org=%s not charged (%.3f s): %s", org_id, seconds, exc)
        return
    _seen[org_id] = (index, float(total))


# Per process: each organization's window total as Redis answered this process's last charge of it.
_seen: dict[int, tuple[int, float]] = {}


def busy(org_id: int, threshold: float, now: float | None = None) -> bool:
    """Whether the organization's jobs ran `threshold` seconds or more over the last minute, as far as
    this process's last charge of it told (no round trip: the total Redis answered that charge, the
    previous window's share fading as in `spent`). False with a threshold of 0."""
    seen = _seen.get(org_id)
    if threshold <= 0 or seen is None:
        return False
    index, previous_share = _window(now)
    window, total = seen
    if window == index:
        return total >= threshold
    return window == index - 1 and total * previous_share >= threshold


@dataclass(frozen=True)
class Spent:
    """An organization's worker time over the last minute, and when a new job may come if over."""

    seconds: float
    retry_after: int


def spent(client: redis.Redis, org_id: int, now: float | None = None, budget: float | None = None) -> Spent:
    """The organization's worker seconds over the last minute (sliding estimate over two windows),
    and the seconds until they fall under `budget` with nothing more charged (until the previous
    window has left the minute, without one)."""
    index, previous_share = _window(now)
    current, previous = client.mget(_key(org_id, index), _key(org_id, index - 1))
    now_total, before = float(current or 0), float(previous or 0)
    seconds = now_total + before * previous_share
    return Spent(seconds, max(1, math.ceil(_until_under(now_total, before, previous_share, budget))))


def _until_under(current: float, previous: float, previous_share: float, budget: float | None) -> float:
    """Seconds until the sliding total (current + previous x its fading share, then the current one
    fading in its turn once its window ends) is under `budget`."""
    to_window_end = WINDOW_SECONDS * previous_share
    if budget is None:
        return to_window_end
    if current + previous * previous_share < budget:
        return 0.0
    if current < budget:
        # Within this window: the previous one's share fades by previous / WINDOW_SECONDS a second.
        return (current + previous * previous_share - budget) * WINDOW_SECONDS / previous + 1e-9
    # Then this window's total fades over the next one.
    return to_window_end + WINDOW_SECONDS * (1 - budget / current) + 1e-9


def demotion_delay(org_id: int | None, after: float, busy_seconds: float) -> float:
    """Seconds a run keeps its priority: `after`, or none at all while its organization's jobs ran
    `busy_seconds` or more of the last minute (a stream of jobs each shorter than `after` would
    otherwise hold a worker slot and a database backend at full priority throughout)."""
    if org_id is not None and busy(org_id, busy_seconds):
        return 0.0
    return after
