"""Read time per organization: the seconds its analytics answers took to compute, and the budget a new
computation must fit in.

A cached answer costs a lookup; an answer computed (a miss, on any path: the REST reads, the dashboard,
an embed link, a WebSocket subscription's values and their refreshes) costs the web process and a
database backend for as long as it takes. Each computation is charged to its organization as it ends
(in the round trip that stores the answer) with its share of the process's time, split between the
minute it ended in and the one before when it began there, and a new one is refused while the
organization's computations took ANALYTICS_READ_SECONDS_PER_MINUTE or more over the last minute (the
current minute and the share of the one before still inside it), as far as this process's last
charge of it told (no round trip for the check). One client asking one question after another stays
under a budget of 60 s a minute unless its answers keep a process computing the whole minute; a swarm
of clients of one organization, each asking what no cache holds, does, and then gets a 429 (cached
answers are still served) while the other organizations keep the web processes. Beat's cache warming
(a forced recompute in a worker) is charged as the job it is, not here.

A computation's share: while k computations run in one web process (greenlets of a gevent worker, or
threads), each is charged 1/k of the time that passes (the virtual time of processor sharing, kept
per process). Its wall time would charge a computation for the others that ran beside it: a normal
organization's read, slowed by a flood of another's beside it, would pay for the flood. With shares,
what a process charges over a minute adds up to at most the minute, however many run at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from webapp.infra.time_windows import Charge, TimeWindows

_WINDOWS = TimeWindows("an:rt")
_SOCKET_WINDOWS = TimeWindows("an:rtw")


@dataclass(frozen=True)
class Budget:
    """Seconds a minute an organization's computations of one kind may take, the windows that count
    them, and the setting that says it."""

    seconds: float
    windows: TimeWindows
    setting: str
    what: str


def requests(seconds: float) -> Budget:
    """The budget of the answers requests ask for (REST, the dashboard, embed links, exports, alert
    simulations): ANALYTICS_READ_SECONDS_PER_MINUTE."""
    return Budget(seconds, _WINDOWS, "ANALYTICS_READ_SECONDS_PER_MINUTE", "analytics answers")


def sockets(seconds: float) -> Budget:
    """The budget of the values WebSockets are sent (subscribe, periodic updates, a metric_update's
    fresh values): WS_READ_SECONDS_PER_MINUTE, of its own and smaller. A socket's computations are
    cheap to ask for many at once (forty sockets each subscribing with new filters) and values the
    server pushes, not answers a client waits on; a script asking the REST reads one after another
    keeps the larger budget."""
    return Budget(seconds, _SOCKET_WINDOWS, "WS_READ_SECONDS_PER_MINUTE", "WebSocket values")


class ReadTimeSpent(Exception):
    """The organization's computations used up their budget of the last minute."""

    def __init__(self, org_id: int, budget: Budget, retry_after: int) -> None:
        super().__init__(
            f"the organization's {budget.what} took {budget.seconds:g} s or more to compute over the last "
            f"minute, its limit ({budget.setting}); answers already cached are still served, new ones in "
            f"{retry_after} s"
        )
        self.org_id = org_id
        self.budget = budget.seconds
        self.retry_after = retry_after


def check(org_id: int, budget: Budget | None) -> None:
    """Raise ReadTimeSpent when the organization is at its `budget` (None or 0 s: none)."""
    if budget is not None and budget.seconds > 0 and budget.windows.busy(org_id, budget.seconds):
        raise ReadTimeSpent(org_id, budget, budget.windows.retry_after_seen(org_id, budget.seconds))


class SharedClock:
    """Processor-sharing virtual time of one process: it advances by dt / k while k computations run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._virtual = 0.0
        self._at = time.monotonic()
        self._running = 0

    def _advance(self) -> None:
        now = time.monotonic()
        if self._running:
            self._virtual += (now - self._at) / self._running
        self._at = now

    def start(self) -> float:
        """A computation starts: the virtual time now, for `end`."""
        with self._lock:
            self._advance()
            self._running += 1
            return self._virtual

    def end(self, started: float) -> float:
        """The computation that started at virtual time `started` ends: its share, in seconds."""
        with self._lock:
            self._advance()
            self._running -= 1
            return self._virtual - started


_CLOCK = SharedClock()


def started() -> float:
    """Mark a computation's start in this process (see SharedClock)."""
    return _CLOCK.start()


def share(mark: float) -> float:
    """End the computation marked `mark`: the seconds of this process's time that were its share."""
    return _CLOCK.end(mark)


@dataclass
class Computation:
    """One computation of an organization's under way: its start in the process's shared clock and
    on the wall clock (for the split between minutes); `charge` or `charge_into` ends it."""

    org_id: int
    budget: Budget | None
    mark: float = field(default_factory=started)
    began: float = field(default_factory=time.time)

    def charge(self, client: redis.Redis) -> None:
        """End it and charge its share to the budget's windows (a round trip of its own)."""
        took = share(self.mark)
        if self.budget is not None and self.budget.seconds > 0:
            self.budget.windows.charge(client, self.org_id, took, started=self.began)

    def charge_into(self, pipe: Any) -> Charge | None:
        """End it and queue its charge on `pipe` (None without a budget); `note` the replies."""
        took = share(self.mark)
        if self.budget is None or self.budget.seconds <= 0:
            return None
        return self.budget.windows.charge_into(pipe, self.org_id, took, started=self.began)


def begin(org_id: int, budget: Budget | None) -> Computation:
    """A computation of the organization's starts: ReadTimeSpent when its read time is spent."""
    check(org_id, budget)
    return Computation(org_id, budget)


@contextmanager
def charged(client: redis.Redis, org_id: int, budget: Budget | None) -> Iterator[None]:
    """Run the block as a computation of the organization's (a read that no cache answers: a
    synchronous export, an alert's simulation): refused when its read time is spent, charged its
    share as it ends (however it ends)."""
    computation = begin(org_id, budget)
    try:
        yield
    finally:
        computation.charge(client)
