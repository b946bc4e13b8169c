"""Answers are written as JSON text holding the values the standard library would write."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from webapp.analytics.cache import encode_answer


def test_the_same_values_as_the_standard_library():
    value = {
        "rows": [
            {
                "group": {"channel": "email", "priority": None},
                "bucket": "2026-03-29T02:00:00+02:00",
                "ticket_count": {"count": 7},
                "response_time": {"avg": 0.1, "min": 1e16, "max": -2.5e-7},
            },
            {"group": {"channel": "émail ✓"}, "values": (1, 2, 3), "flag": True},
        ],
        "numbers": [0, -1, 2**63 - 1, 1.5, 123456789.123456789],
        "keys": {1: "one", "2": "two"},
        "as_text": [Decimal("1.25"), uuid.UUID(int=7), date(2026, 1, 1), timedelta(seconds=5)],
        "instants": [
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 7, 1, 5, tzinfo=timezone(timedelta(hours=2))),
        ],
    }
    expected = json.loads(json.dumps(value, default=str))
    text = encode_answer(value)
    assert json.loads(text) == {
        **expected,
        "instants": [
            # Instants in ISO 8601 (the standard library's str() has a space instead of the T).
            "2026-01-01T00:00:00+00:00",
            "2026-07-01T05:00:00+02:00",
        ],
    }
    assert "\n" not in text  # the cache's entry keeps its header on the first line


def test_sets_and_numpy_numbers_are_written_as_json_values():
    import numpy as np

    text = encode_answer({"tags": {"a"}, "n": np.int64(3), "avg": np.float64(1.5), "ok": np.bool_(True)})
    assert json.loads(text) == {"tags": ["a"], "n": 3, "avg": 1.5, "ok": True}


def test_not_a_number_is_null_and_a_huge_integer_is_written_whole():
    assert json.loads(encode_answer({"avg": math.nan, "max": math.inf})) == {"avg": None, "max": None}
    assert json.loads(encode_answer({"n": 2**70})) == {"n": 2**70}
