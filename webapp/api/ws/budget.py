"""A socket's message budget: subscribe and resume make the server read (values, the stream), so
each socket may send them at a bounded rate (a token bucket: a burst, then so many a minute)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# The client messages that cost the server a read; ping and unsubscribe answer from memory.
COSTLY = frozenset({"subscribe", "resume"})
# Refusals of one organization's sockets a second in one web process before each waits its turn,
# and the longest one holds its socket's next read (see RefusalPace).
REFUSALS_PER_SECOND = 100.0
REFUSAL_HOLD_MAX_SECONDS = 2.0
# Organizations whose next turn a process remembers before it forgets those already past.
PACE_ORGANIZATIONS = 1000


@dataclass(frozen=True)
class Limits:
    """A socket's limits: the burst and rate of costly messages, and how far back a resume reaches."""

    burst: int
    per_minute: int
    resume_max_seconds: int
    # How long a message refused for the budget holds the socket's next read: a client sending in a
    # tight loop is slowed to the pace of its refusals instead of spinning the worker (REFUSAL_PACE_MS).
    refusal_hold_seconds: float = 0.0


class RefusalPace:
    """The refusals of each organization's sockets in this process, paced to REFUSALS_PER_SECOND.

    Each socket's refusal holds its next read REFUSAL_PACE_MS; an organization whose sockets together
    are refused faster than REFUSALS_PER_SECOND has each refusal hold until its turn, so that forty
    sockets of one client sending in a loop make a hundred refusals a second, not 1,600 (at a fixed
    hold each socket kept its own pace, and together they held half a CPU of the web processes). One
    socket alone keeps the fixed hold.
    """

    def __init__(self, per_second: float = REFUSALS_PER_SECOND) -> None:
        self.spacing = 1.0 / per_second
        self._next: dict[int, float] = {}  # organization -> when its next refusal's turn comes

    def hold(self, org_id: int, base: float, now: float | None = None) -> float:
        """Seconds this refusal holds its socket's next read: `base`, or until the organization's turn."""
        if base <= 0:
            return 0.0
        moment = time.monotonic() if now is None else now
        # Never further ahead than the longest hold: a swarm's turns do not outlast it.
        turn = min(max(moment, self._next.get(org_id, moment)), moment + REFUSAL_HOLD_MAX_SECONDS)
        if len(self._next) > PACE_ORGANIZATIONS:
            self._next = {org: at for org, at in self._next.items() if at > moment}
        self._next[org_id] = turn + self.spacing
        return max(base, turn - moment)


@dataclass
class MessageBudget:
    """Tokens for costly messages: `burst` at most, refilled at `per_minute`."""

    burst: int
    per_minute: int
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self) -> float:
        """0 when a message may go now (a token is spent), else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_minute / 60)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * 60 / self.per_minute
