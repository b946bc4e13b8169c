"""What an analytics answer costs, known before any query: its cells, and the budget a read spends.

A cell is one number of the answer: groups x buckets x (for each metric) its statistics. An answer
costs memory in the web process, bytes on the wire and a copy in the cache in proportion to its
cells, so every path that computes one (the REST reads, exports, subscriptions, alert simulations,
report schedules) refuses, with the same words, an estimate above the limit before it reads a row.

Groups of a free-text dimension (category, assigned_to) are not known before the query: the estimate
counts its filtered values, or 1, and the aggregation checks the limit again once it knows its
groups, before it builds a row. Before a job is queued for one (async, heavy, an export), the
combinations the tickets created in the range hold are counted (`free_text_groups`), so that a job
is not queued for an answer its own check would refuse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta

from webapp.analytics.buckets import MAX_BUCKETS, BucketError
from webapp.analytics.metrics import METRICS
from webapp.analytics.window import QueryError, Window
from webapp.core.filters import Filters
from webapp.core.vocabulary import DIMENSION_VALUES

# A point of a series: its value, count, min and max (the bucket label is not counted).
POINT_STATISTICS = 4
# Days of raw events one unit of the analytics budget pays for when `exact` skips the rollups.
EXACT_DAYS_PER_UNIT = 30


class TooCostly(QueryError):
    """The answer would hold more cells than the limit, or an exact read would scan too long a range."""

    def __init__(self, message: str, field: str, details: dict[str, int | str]) -> None:
        super().__init__(message, field)
        self.details = details


@dataclass(frozen=True)
class Estimate:
    """The size of an answer before it is computed."""

    groups: int
    buckets: int
    statistics: int  # summed over the metrics
    metrics: int

    @property
    def cells(self) -> int:
        return self.groups * self.buckets * self.statistics

    def check(self, limit: int, *, field: str = "granularity") -> None:
        """TooCostly naming the estimate and the limit when the answer would hold more than `limit` cells."""
        if self.cells <= limit:
            return
        raise TooCostly(
            f"the answer would hold about {self.cells:,} cells ({self.groups} groups x {self.buckets} "
            f"buckets x {self.statistics} statistics over {self.metrics} metrics), more than the limit "
            f"of {limit:,} (ANALYTICS_MAX_CELLS); use fewer metrics, percentiles or group_by fields, "
            "a coarser granularity or a narrower range",
            field,
            {
                "estimate": self.cells,
                "limit": limit,
                "groups": self.groups,
                "buckets": self.buckets,
                "statistics": self.statistics,
                "metrics": self.metrics,
            },
        )


# The numbers of one row of a grouped answer whose rows only the data knows: a performance SLA group
# (first response, resolution and next reply, each met, achieved, breached, pending, compliance and
# compliance_pct), a distribution's value (value, count, share), an agent (its eight fields).
PERFORMANCE_GROUP_STATISTICS = 18
DISTRIBUTION_VALUE_STATISTICS = 3
AGENT_ROW_STATISTICS = 8


def check_rows(rows: int, statistics: int, metrics: int, max_cells: int | None) -> None:
    """TooCostly once an answer's rows are known (groups of a free-text dimension, a distribution's
    values, agents), before the answer is built, cached or sent: the same limit and words as every
    estimate. None: no limit (a job or a caller that checked already)."""
    if max_cells is not None:
        Estimate(rows, 1, statistics, metrics).check(max_cells, field="group_by")


def statistics(metric: str, percentiles: Sequence[int]) -> int:
    """The numbers an aggregation gives of one metric: count, or count, avg, min, max and each pNN."""
    return 1 if METRICS[metric].is_count else 4 + len(percentiles)


def groups(group_by: Iterable[str], filters: Filters, free_text_groups: int | None = None) -> int:
    """The groups a group_by can make, as far as is known before a query (see the module's note):
    `free_text_groups`, when counted, is how many combinations its unfiltered free-text dimensions
    make together."""
    total = 1
    for dimension in group_by:
        if dimension in filters:
            total *= max(1, len(filters[dimension]))
        else:
            total *= len(DIMENSION_VALUES.get(dimension, ())) or 1
    if free_text_groups is not None and free_text(group_by, filters):
        total *= max(1, free_text_groups)
    return total


def free_text(group_by: Iterable[str], filters: Filters) -> list[str]:
    """The group_by dimensions whose values only the data knows (free text, no filter listing them)."""
    return [d for d in group_by if d not in DIMENSION_VALUES and d not in filters]


def bucket_count(window: Window, granularity: str | None = None) -> int:
    """The buckets of the window at its granularity (or `granularity`), 1 without one: counted by
    calendar arithmetic in the window's zone, never by building them (4,000 hourly bucket bounds
    cost more CPU than refusing the request should). Exact, but across a change of less than an
    hour (Australia/Lord_Howe) where hourly may count one more (the autumn 90-minute bucket) or one
    fewer (the spring 30-minute one); the bucket limit itself is checked on the buckets built."""
    chosen = granularity or window.granularity
    if chosen is None:
        return 1
    start, end = window.start.astimezone(window.tz), window.end.astimezone(window.tz)
    if chosen == "hourly":  # real hours from the local whole hour holding start
        floor = start.replace(minute=0, second=0, microsecond=0)
        return max(1, math.ceil((window.end - floor).total_seconds() / 3600))
    first = start.date()
    last = end.date() + (timedelta(days=1) if end.time() != time(0) else timedelta(0))  # exclusive
    if chosen == "daily":
        return max(1, (last - first).days)
    if chosen == "weekly":
        monday = first - timedelta(days=first.weekday())
        return max(1, math.ceil((last - monday).days / 7))
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[chosen]

    def period(day: date) -> int:
        return (day.year * 12 + day.month - 1) // months

    return max(1, period(last - timedelta(days=1)) - period(first) + 1)


def check_buckets(window: Window, granularity: str) -> None:
    """BucketError when the window holds more `granularity` buckets than a series may (counted, not
    built), for a read that buckets a window it did not check itself (the dashboard's daily series)."""
    count = bucket_count(window, granularity)
    if count > MAX_BUCKETS:
        raise BucketError(
            f"the range holds about {count:,} {granularity} buckets, more than the limit of "
            f"{MAX_BUCKETS:,} a series may have; narrow the range",
            {"estimate": count, "limit": MAX_BUCKETS},
        )


def aggregation(
    *,
    metrics: Sequence[str],
    group_by: Sequence[str],
    window: Window,
    filters: Filters,
    percentiles: Sequence[int],
    free_text_groups: int | None = None,
) -> Estimate:
    """The size of an aggregation's answer (`free_text_groups`: see groups)."""
    return Estimate(
        groups=groups(group_by, filters, free_text_groups),
        buckets=bucket_count(window),
        statistics=sum(statistics(metric, percentiles) for metric in metrics),
        metrics=len(metrics),
    )


def series(window: Window, *, metrics: int = 1, granularity: str | None = None) -> Estimate:
    """The size of `metrics` series over the window's buckets."""
    return Estimate(1, bucket_count(window, granularity), POINT_STATISTICS * metrics, metrics)


def raw_units(window: Window) -> int:
    """The analytics budget units a read answered from raw rows alone spends (time in status, the
    agents report): one more per EXACT_DAYS_PER_UNIT days of range, as an exact read, with no cap
    on the range (their answers are one row per status or per agent, whatever the range) unless
    exact=true is asked, which exact_units caps there as everywhere."""
    days = max((window.end - window.start).total_seconds() / 86400, 0.0)
    return 1 + math.ceil(days / EXACT_DAYS_PER_UNIT)


def exact_units(window: Window, exact: bool, *, max_days: int) -> int:
    """The analytics budget units a read spends: 1, or for `exact` (raw events, no rollups) one more
    per EXACT_DAYS_PER_UNIT days of range; TooCostly when an exact range is longer than `max_days`."""
    if not exact:
        return 1
    days = (window.end - window.start).total_seconds() / 86400
    if days > max_days:
        raise TooCostly(
            f"exact=true reads raw events and may span at most {max_days} days "
            f"(ANALYTICS_EXACT_MAX_DAYS), not {math.ceil(days)}; narrow the range or drop exact",
            "exact",
            {"estimate": math.ceil(days), "limit": max_days},
        )
    return 1 + math.ceil(days / EXACT_DAYS_PER_UNIT)
