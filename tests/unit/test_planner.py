"""The planner's grain: the one keeping the fewest dimensions among those keeping every one asked for."""

from __future__ import annotations

import pytest

from webapp.analytics.planner import grain_for
from webapp.analytics.rollup_sql import CUBE_GRAIN, DIMENSION_BITS


@pytest.mark.parametrize(
    ("dimensions", "grain"),
    [
        ((), 0),
        (("priority",), DIMENSION_BITS["priority"]),
        (("channel", "channel"), DIMENSION_BITS["channel"]),
        (("priority", "channel"), CUBE_GRAIN),
        (("status", "priority", "channel"), CUBE_GRAIN),
        (("category",), DIMENSION_BITS["category"]),
        (("assigned_to",), DIMENSION_BITS["assigned_to"]),
        (("category", "priority"), None),
        (("assigned_to", "status", "channel"), None),
    ],
)
def test_grain_keeps_every_dimension_with_the_fewest_rows(dimensions, grain):
    assert grain_for(dimensions) == grain
    if grain is not None:
        assert all(grain & DIMENSION_BITS[d] for d in dimensions)
