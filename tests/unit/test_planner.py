"""The planner's grain: one that keeps every dimension asked for, read index-only when it can be."""

from __future__ import annotations

import pytest

from webapp.analytics.planner import grain_for
from webapp.analytics.rollup_sql import CUBE_GRAIN, DIMENSION_BITS


@pytest.mark.parametrize(
    ("dimensions", "counts", "sketches"),
    [
        ((), 0, 0),
        (("priority",), CUBE_GRAIN, DIMENSION_BITS["priority"]),
        (("channel", "channel"), CUBE_GRAIN, DIMENSION_BITS["channel"]),
        (("priority", "channel"), CUBE_GRAIN, CUBE_GRAIN),
        (("status", "priority", "channel"), CUBE_GRAIN, CUBE_GRAIN),
        (("category",), DIMENSION_BITS["category"], DIMENSION_BITS["category"]),
        (("assigned_to",), DIMENSION_BITS["assigned_to"], DIMENSION_BITS["assigned_to"]),
        (("category", "priority"), None, None),
        (("assigned_to", "status", "channel"), None, None),
    ],
)
def test_grain_keeps_every_dimension_and_prefers_covered_grains_without_sketches(
    dimensions, counts, sketches
):
    assert grain_for(dimensions) == counts
    assert grain_for(dimensions, sketches=True) == sketches
    for grain in (counts, sketches):
        if grain is not None:
            assert all(grain & DIMENSION_BITS[d] for d in dimensions)
