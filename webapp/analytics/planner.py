"""Which rollup grain answers a read: of the grains keeping every dimension it filters or groups on,
the one with the fewest rows.

The grains are rollup_sql.GRAINS: the organization's totals (0), one per dimension, and the cube of
status, priority and channel. Every cell of a grain is the union of cells of any grain that keeps
more dimensions, so a grain never has more rows over a range than one keeping a superset of its
dimensions: the grain keeping the fewest dimensions reads the fewest rows, whatever the data. Rows
are what a warm read pays for (each is bucketed and aggregated): a year of priority=high,urgent
counts took 89 to 164 ms from the priority grain against 167 to 170 ms from the cube, whose index
hands over six times the rows (one per channel and status) though in 769 pages against 14,674
(1M tickets, load average 14, best of 7). None: no grain keeps them all, and the read goes to raw
events.
"""

from __future__ import annotations

from collections.abc import Iterable

from webapp.analytics.rollup_sql import DIMENSION_BITS, GRAINS


def grain_for(dimensions: Iterable[str]) -> int | None:
    """The grain with the fewest rows that keeps every dimension in `dimensions`; None when none does."""
    needed = 0
    for name in dimensions:
        needed |= DIMENSION_BITS[name]
    fitting = [grain for grain in GRAINS if grain & needed == needed]
    return min(fitting, key=int.bit_count) if fitting else None
