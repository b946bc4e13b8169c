"""Which rollup grain answers a read: the cheapest one that keeps every dimension it filters or groups on.

The grains are rollup_sql.GRAINS: the organization's totals (0), one per dimension, and the cube of
status, priority and channel. Every cell of a grain is the union of cells of any grain that keeps
more dimensions, so a grain never has more rows over a range than one keeping a superset of its
dimensions: among the grains that can answer, the one keeping the fewest dimensions reads the
fewest rows, whatever the data. None: no grain keeps them all, and the read goes to raw events.
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
