"""Seconds of work per organization, counted in Redis by the minute: what a budget of "so many seconds
a minute" is checked against.

Each charge adds its seconds to the organization's current one-minute window (INCRBYFLOAT, kept three
minutes). The time an organization spent over the last minute is the current window plus the share
of the previous one still inside that minute (a sliding estimate from two keys). A process also keeps,
per organization, the totals Redis answered its last charge (that window's and the one before), so
that a check needs no round trip (`busy`): a process that charged recently knows, one that did not
finds out at its next charge.
Jobs (`jobs.worker_time`) and analytics reads (`analytics.read_time`) each count in their own keys.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Charge:
    """A charge queued on a pipeline: its `commands` replies (the last ones of the pipeline's) tell the
    two windows' totals, which `note` keeps as the process's view of the organization."""

    windows: TimeWindows
    org_id: int
    index: int
    commands: int

    def note(self, replies: Sequence[Any]) -> None:
        """Keep the totals Redis answered (`replies`: the pipeline's replies, this charge's last)."""
        mine = replies[len(replies) - self.commands :]
        self.windows.seen[self.org_id] = (self.index, float(mine[0]), float(mine[-1] or 0))


@dataclass
class TimeWindows:
    """One kind of work's seconds per organization (keys `<prefix>:<org>:<window>`)."""

    prefix: str
    # Per process: each organization's totals as Redis answered this process's last charge of it: the
    # window it fell in, that window's total and the previous window's.
    seen: dict[int, tuple[int, float, float]] = field(default_factory=dict)

    def key(self, org_id: int, index: int) -> str:
        return f"{self.prefix}:{org_id}:{index}"

    def charge(
        self,
        client: redis.Redis,
        org_id: int,
        seconds: float,
        now: float | None = None,
        started: float | None = None,
    ) -> None:
        """Add `seconds` to the organization's windows (see charge_into; best effort: a Redis that does
        not answer loses the charge, it never fails the work)."""
        if seconds <= 0:
            return
        try:
            pipe = client.pipeline(transaction=False)
            charge = self.charge_into(pipe, org_id, seconds, now, started)
            replies = pipe.execute()
        except redis.RedisError as exc:
            log.warning("%s of org=%s not charged (%.3f s): %s", self.prefix, org_id, seconds, exc)
            return
        charge.note(replies)

    def charge_into(
        self, pipe: Any, org_id: int, seconds: float, now: float | None = None, started: float | None = None
    ) -> Charge:
        """Queue a charge of `seconds` for work that ended `now` (default: the time now) on `pipe`.

        Work that `started` (time.time()) in the window before is charged to both windows in the
        proportion of its time in each: charged whole where it ended, a minute of work would count
        in one window with the minute before's. The previous window's total is read back too."""
        moment = time.time() if now is None else now
        index, _ = window_of(moment)
        here, before = max(seconds, 0.0), 0.0
        window_start = index * WINDOW_SECONDS
        if started is not None and started < window_start < moment:
            before = here * min(1.0, (window_start - started) / (moment - started))
            here -= before
        key, previous = self.key(org_id, index), self.key(org_id, index - 1)
        pipe.incrbyfloat(key, round(here, 6))
        pipe.expire(key, 3 * WINDOW_SECONDS)
        commands = 3
        if before > 0:
            pipe.incrbyfloat(previous, round(before, 6))
            pipe.expire(previous, 3 * WINDOW_SECONDS)
            commands += 2
        pipe.get(previous)
        return Charge(self, org_id, index, commands)

    def _seen_now(self, org_id: int, now: float | None) -> tuple[float, float, float] | None:
        """The totals last seen, as (current, previous) windows of `now`, and the previous one's share."""
        seen = self.seen.get(org_id)
        if seen is None:
            return None
        index, previous_share = window_of(now)
        window, current, previous = seen
        if window == index:
            return current, previous, previous_share
        if window == index - 1:
            return 0.0, current, previous_share
        return None

    def busy(self, org_id: int, threshold: float, now: float | None = None) -> bool:
        """Whether the organization spent `threshold` seconds or more over the last minute (the current
        window and the previous one's share, as in `spent`), as far as this process's last charge of
        it told: no round trip. False with a threshold of 0."""
        seen = self._seen_now(org_id, now)
        if threshold <= 0 or seen is None:
            return False
        current, previous, previous_share = seen
        return current + previous * previous_share >= threshold

    def retry_after_seen(self, org_id: int, budget: float, now: float | None = None) -> int:
        """Seconds until the totals this process last saw fall under `budget` (at least 1)."""
        seen = self._seen_now(org_id, now)
        if seen is None:
            return 1
        return max(1, math.ceil(until_under(*seen, budget)))

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
