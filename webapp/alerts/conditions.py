"""What a rule asks of a bucket: a threshold, a change against the bucket before, or an anomaly.

The anomaly score of a bucket's value x is |x - median(B)| / (1.4826 * MAD(B)), B being the values of
the same bucket in the `baseline_periods` periods before it (see periods.baseline_start) and MAD the
median absolute deviation from median(B); the median of an even number of values is the mean of the
middle two. There is no score when x has no value, when fewer than `baseline_periods` values of B
exist, or when MAD is 0 (a flat baseline: any change would be infinitely unusual).

What counts as a value: for counting metrics (a point's value is its count) an empty bucket is 0, a
measurement like any other; for averages and percentages an empty bucket has no value, so it is
missing from B, and a bucket without a value meets no condition. A firing rule resolves there.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# 1 / (the 0.75 quantile of the standard normal): makes MAD estimate a normal sample's deviation.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Threshold:
    """`above`: the value is strictly greater than `value`; `below`: strictly less."""

    type: str
    value: float


@dataclass(frozen=True)
class Change:
    """The change in percent against the bucket before: `up` at least +value, `down` at most -value,
    `either` at least `value` in size. Undefined (not met) when the bucket before has no value or 0."""

    direction: str
    value: float
    type: str = "change_pct"


@dataclass(frozen=True)
class Anomaly:
    """The anomaly score is at least `score`; a bucket with no score does not meet it."""

    score: float
    baseline_periods: int
    type: str = "anomaly"


Condition = Threshold | Change | Anomaly


def condition_from(raw: Mapping[str, Any]) -> Condition:
    """The condition a rule stores (already validated when it was saved)."""
    kind = raw["type"]
    if kind == "change_pct":
        return Change(raw["direction"], float(raw["value"]))
    if kind == "anomaly":
        return Anomaly(float(raw["score"]), int(raw["baseline_periods"]))
    return Threshold(kind, float(raw["value"]))


def as_dict(condition: Condition) -> dict[str, Any]:
    """The condition as it is stored and answered."""
    if isinstance(condition, Change):
        return {"type": "change_pct", "direction": condition.direction, "value": condition.value}
    if isinstance(condition, Anomaly):
        return {"type": "anomaly", "score": condition.score, "baseline_periods": condition.baseline_periods}
    return {"type": condition.type, "value": condition.value}


def anomaly_score(value: float | None, baseline: Sequence[float], periods: int) -> float | None:
    """|value - median(B)| / (1.4826 * MAD(B)), or None (no value, B short, or MAD 0)."""
    if value is None or len(baseline) < periods:
        return None
    center = statistics.median(baseline)
    mad = statistics.median([abs(b - center) for b in baseline])
    if mad == 0:
        return None
    return abs(value - center) / (MAD_SCALE * mad)


def change_pct(value: float | None, previous: float | None) -> float | None:
    """100 * (value - previous) / |previous|, or None when either has no value or previous is 0."""
    if value is None or previous is None or previous == 0:
        return None
    return 100.0 * (value - previous) / abs(previous)


@dataclass(frozen=True)
class Reading:
    """What one closed bucket brings to its evaluation."""

    value: float | None
    count: int
    previous: float | None = None  # the value of the bucket before (change_pct)
    baseline: tuple[float, ...] = ()  # the values of the same bucket in earlier periods (anomaly)


@dataclass(frozen=True)
class Verdict:
    """Whether the bucket meets the rule, with the score or change it was judged by."""

    met: bool
    score: float | None = None
    change_pct: float | None = None


def judge(condition: Condition, reading: Reading, min_count: int) -> Verdict:
    """The verdict on one bucket: the condition met by its value, and at least `min_count` counted."""
    enough = reading.count >= min_count
    x = reading.value
    if isinstance(condition, Anomaly):
        score = anomaly_score(x, reading.baseline, condition.baseline_periods)
        return Verdict(enough and score is not None and score >= condition.score, score=score)
    if isinstance(condition, Change):
        change = change_pct(x, reading.previous)
        if change is None:
            return Verdict(False)
        if condition.direction == "up":
            met = change >= condition.value
        elif condition.direction == "down":
            met = change <= -condition.value
        else:
            met = abs(change) >= condition.value
        return Verdict(enough and met, change_pct=change)
    if x is None:
        return Verdict(False)
    met = x > condition.value if condition.type == "above" else x < condition.value
    return Verdict(enough and met)
