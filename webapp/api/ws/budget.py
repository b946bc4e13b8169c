"""A socket's message budget: subscribe and resume make the server read (values, the stream), so
each socket may send them at a bounded rate (a token bucket: a burst, then so many a minute)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# The client messages that cost the server a read; ping and unsubscribe answer from memory.
COSTLY = frozenset({"subscribe", "resume"})


@dataclass(frozen=True)
class Limits:
    """A socket's limits: the burst and rate of costly messages, and how far back a resume reaches."""

    burst: int
    per_minute: int
    resume_max_seconds: int
    # How long a message refused for the budget holds the socket's next read: a client sending in a
    # tight loop is slowed to the pace of its refusals instead of spinning the worker (REFUSAL_PACE_MS).
    refusal_hold_seconds: float = 0.0


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
