"""Per-organization request budgets: fixed one-minute windows counted in Redis, taken in blocks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

WINDOW_SECONDS = 60


def group_of(endpoint: str | None) -> str | None:
    """Which budget a route spends: analytics, jobs, exports, or none."""
    if not endpoint:
        return None
    if endpoint.startswith("api.exports.") or endpoint == "api.analytics.export":
        return "exports"
    if endpoint.startswith(("api.jobs.", "api.ticket_imports.")) or endpoint == "api.cache.refresh":
        return "jobs"
    if endpoint.startswith(("api.analytics.", "api.cache.")):
        return "analytics"
    return None


@dataclass(frozen=True)
class Window:
    """The current budget window of one organization and group: its counter key and when it ends."""

    key: str
    ends_at: float


def window(org_id: int, group: str, now: float | None = None) -> Window:
    """The budget window of `group` for the organization at `now` (default: the current one)."""
    moment = time.time() if now is None else now
    index = int(moment // WINDOW_SECONDS)
    return Window(f"an:rl:{org_id}:{group}:{index}", (index + 1) * WINDOW_SECONDS)


def block_size(limit: int) -> int:
    """Requests one process takes from a window at once: 1 (exact counting) below 1,000 a minute, up
    to 32 for large budgets, so at most 31 per process go unused in a window."""
    return max(1, min(32, limit // 1000))


@dataclass
class _Held:
    ends_at: float
    left: int
    spent: bool  # the window's budget is used up: nothing more to take from Redis


class Leases:
    """Budget taken from Redis in blocks (`block_size`) and spent locally, so that most requests need
    no round trip for it. Redis's counter holds what was taken, so the processes together never
    admit more than the limit; a process only admits from blocks it holds."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def take(self, window: Window) -> int | None:
        """0: admitted from a held block; n > 0: refused, wait n seconds; None: Redis must be asked."""
        with self._lock:
            held = self._held.get(window.key)
            if held is None:
                return None
            if held.left > 0:
                held.left -= 1
                return 0
            if held.spent:
                return max(1, int(window.ends_at - time.time()) + 1)
            return None

    def commands(self, window: Window, limit: int) -> list[tuple[str, str, int] | tuple[str, str]]:
        """The commands taking a block (the first reply is the window's count so far, block included)."""
        return [("INCRBY", window.key, block_size(limit)), ("EXPIRE", window.key, WINDOW_SECONDS + 1)]

    def settle(self, window: Window, limit: int, taken: int) -> int | None:
        """Admit this request from the block just taken (`taken`: the INCRBY's reply); the seconds to
        wait when nothing of it was within the limit, else None."""
        block = block_size(limit)
        granted = max(0, min(block, limit - (taken - block)))
        now = time.time()
        with self._lock:
            for key in [k for k, h in self._held.items() if h.ends_at <= now]:
                del self._held[key]
            held = self._held.setdefault(window.key, _Held(window.ends_at, 0, False))
            held.spent = held.spent or granted < block
            if granted == 0:
                return max(1, int(window.ends_at - now) + 1)
            held.left += granted - 1
        return None
