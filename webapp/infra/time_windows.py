"""Seconds of work per organization, counted in Redis by the minute: what a budget of "so many seconds
a minute" is checked against.

Each charge adds its seconds to the organization's current one-minute window (INCRBYFLOAT, kept three
minutes). The time an organization spent over the last minute is the current window plus the share
of the previous one still inside that minute (a sliding estimate from two keys). A process also keeps,
per organization, the window total Redis answered its last charge, so that a check needs no round
trip (`busy`): a process that charged recently knows, one that did not finds out at its next charge.
Jobs (`jobs.worker_time`) and analytics reads (`analytics.read_time`) each count in their own keys.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def window_of(now: float | None) -> tuple[int, float]:
    """The index of the one-minute window holding `now` (default: the time now), and the share of
    the previous window still inside the last minute."""
    moment = time.time() if now is None else now
    index = int(moment // WINDOW_SECONDS)
    return index, 1 - (moment - index * WINDOW_SECONDS) / WINDOW_SECONDS


@dataclass(frozen=True)
class Spent:
    """An organization's seconds over the last minute, and when it may go on if over its budget."""

    seconds: float
    retry_after: int


@dataclass
class TimeWindows:
    """One kind of work's seconds per organization (keys `<prefix>:<org>:<window>`)."""

    prefix: str
    # Per process: each organization's window total as Redis answered this process's last charge of it.
    seen: dict[int, tuple[int, float]] = field(default_factory=dict)

    def key(self, org_id: int, index: int) -> str:
        return f"{self.prefix}:{org_id}:{index}"

    def charge(self, client: redis.Redis, org_id: int, seconds: float, now: float | None = None) -> None:
        """Add `seconds` to the organization's current window (best effort: a Redis that does not
        answer loses the charge, it never fails the work)."""
        if seconds <= 0:
            return
        try:
            pipe = client.pipeline(transaction=False)
            index = self.charge_into(pipe, org_id, seconds, now)
            total, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("%s of org=%s not charged (%.3f s): %s", self.prefix, org_id, seconds, exc)
            return
        self.note(org_id, index, total)

    def charge_into(self, pipe: Any, org_id: int, seconds: float, now: float | None = None) -> int:
        """Queue a charge's two commands on `pipe` (their replies: the window total, then the expiry's);
        the window's index, for `note`."""
        index, _ = window_of(now)
        key = self.key(org_id, index)
        pipe.incrbyfloat(key, round(max(seconds, 0.0), 6))
        pipe.expire(key, 3 * WINDOW_SECONDS)
        return index

    def note(self, org_id: int, index: int, total: Any) -> None:
        """Remember the window total Redis answered a charge."""
        self.seen[org_id] = (index, float(total))

    def busy(self, org_id: int, threshold: float, now: float | None = None) -> bool:
        """Whether the organization spent `threshold` seconds or more over the last minute, as far as
        this process's last charge of it told (no round trip; the previous window's share fading as in
        `spent`). False with a threshold of 0."""
        seen = self.seen.get(org_id)
        if threshold <= 0 or seen is None:
            return False
        index, previous_share = window_of(now)
        window, total = seen
        if window == index:
            return total >= threshold
        return window == index - 1 and total * previous_share >= threshold

    def retry_after_seen(self, org_id: int, budget: float, now: float | None = None) -> int:
        """Seconds until the total this process last saw falls under `budget` (at least 1)."""
        seen = self.seen.get(org_id)
        index, previous_share = window_of(now)
        if seen is None:
            return 1
        window, total = seen
        current, previous = (total, 0.0) if window == index else (0.0, total)
        return max(1, math.ceil(until_under(current, previous, previous_share, budget)))

    def spent(
        self, client: redis.Redis, org_id: int, now: float | None = None, budget: float | None = None
    ) -> Spent:
        """The organization's seconds over the last minute (sliding estimate over two windows), and
        the seconds until they fall under `budget` with nothing more charged (until the previous
        window has left the minute, without one)."""
        index, previous_share = window_of(now)
        current, previous = client.mget(self.key(org_id, index), self.key(org_id, index - 1))
        now_total, before = float(current or 0), float(previous or 0)
        seconds = now_total + before * previous_share
        return Spent(seconds, max(1, math.ceil(until_under(now_total, before, previous_share, budget))))


def until_under(current: float, previous: float, previous_share: float, budget: float | None) -> float:
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
