"""When synthetic tickets are created: busy local hours and weekdays, a growing trend, DST kept right."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from webapp.core.timeutil import zone
from webapp.tickets.seeding.population import GROWTH, HOUR_WEIGHT, WEEKDAY_WEIGHT


def created_times(
    rng: np.random.Generator, n: int, now_s: int, days: int, tz: str
) -> tuple[np.ndarray, np.ndarray]:
    """Creation instants (epoch seconds, ascending) and the zone's UTC offset at each."""
    zi = zone(tz)
    slots = now_s - days * 86400 + 3600 * np.arange(days * 24, dtype=np.int64)
    # Weighting real hours by their local hour keeps DST right: the repeated autumn hour is two slots.
    offsets = np.array([_utc_offset(int(s) + 1800, zi) for s in slots], dtype=np.int64)
    local = slots + 1800 + offsets
    hour = (local // 3600) % 24
    weekday = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday
    trend = 1 + GROWTH * np.arange(len(slots)) / len(slots)
    cumulative = np.cumsum(HOUR_WEIGHT[hour] * WEEKDAY_WEIGHT[weekday] * trend)
    slot = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    slot = np.minimum(slot, len(slots) - 1)
    created = slots[slot] + rng.integers(0, 3600, n)
    # Ids ascend with creation time, as they do when tickets arrive live.
    order = np.argsort(created, kind="stable")
    return created[order], offsets[slot][order]


def _utc_offset(epoch: int, zi: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(epoch, zi).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())
