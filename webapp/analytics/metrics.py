"""Metric and dimension definitions: the allowlists every analytics query is built from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webapp.core.vocabulary import DIMENSIONS


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    # The ticket event that carries the measurement, and the time it is bucketed at.
    event_type: str
    # Cache families a cached answer of this metric depends on.
    families: tuple[str, ...]
    # SQL for the measured value, over ticket_events `e` and (when `joins_ticket`) tickets `t`;
    # None for a pure count. Only these literals ever reach the SQL text.
    value_sql: str | None = None
    # The value is the ticket's current column, not the event's, so tickets must be joined.
    joins_ticket: bool = False
    # How a point is made of the measurements: "mean" (their average), "count" (how many events),
    # "percent" (the average of 100/0 values: min and max mean nothing), "running" (the sum of every
    # +1/-1 step before the bucket's end), "difference" (of the counts of two other metrics).
    kind: str = "mean"
    # For a "difference": (metric, sign) of its parts; such a metric has no rollup rows of its own.
    parts: tuple[tuple[str, int], ...] = ()
    # The value is the length in hours of the interval that ends at the event (e.value), so a
    # business clock can count the same interval in open hours instead (analytics.clock).
    duration: bool = False
    # The value is the hours the ticket spent in these statuses from its creation to the event: the
    # solve's detail per status on the calendar, its status spans (detail "spans") on another clock.
    in_statuses: tuple[str, ...] = ()

    @property
    def clocked(self) -> bool:
        """Whether the value is a duration that a business clock counts anew (duration or in_statuses)."""
        return self.duration or bool(self.in_statuses)

    @property
    def is_count(self) -> bool:
        return self.value_sql is None and not self.parts

    @property
    def has_percentiles(self) -> bool:
        """A measured metric whose statistics include percentiles."""
        return self.kind == "mean" and self.value_sql is not None

    @property
    def rolled(self) -> bool:
        """Whether the rollups hold rows of this metric (a difference reads its parts' rows)."""
        return not self.parts


METRICS: dict[str, Metric] = {
    "ticket_count": Metric("ticket_count", "tickets", "created", ("volume",)),
    "response_time": Metric(
        "response_time", "hours", "first_response", ("response",), "e.value", duration=True
    ),
    "resolution_time": Metric(
        "resolution_time", "hours", "resolved", ("resolution",), "e.value", duration=True
    ),
    # Sentiment is the ticket's current score: a later correction moves history, by definition.
    "sentiment_score": Metric(
        "sentiment_score", "score", "created", ("sentiment",), "t.sentiment_score", joins_ticket=True
    ),
    # The support metrics read the events tickets.history derives from status histories, replies and
    # ratings: backlog steps (+1/-1), solves (one-touch flag, hours in each unsolved status before
    # it), next replies and the standing rating of each ticket.
    "backlog": Metric("backlog", "tickets", "backlog", ("backlog",), "e.value", kind="running"),
    "solved": Metric("solved", "tickets", "solved", ("solves",), kind="count"),
    "net_flow": Metric(
        "net_flow",
        "tickets",
        "created",
        ("volume", "solves"),
        kind="difference",
        parts=(("ticket_count", 1), ("solved", -1)),
    ),
    "reopens": Metric("reopens", "tickets", "reopened", ("solves",), kind="count"),
    "next_reply_time": Metric(
        "next_reply_time", "hours", "next_reply", ("replies",), "e.value", duration=True
    ),
    "requester_wait_time": Metric(
        "requester_wait_time",
        "hours",
        "solved",
        ("solves",),
        "CAST(e.detail->>'open' AS double precision) + CAST(e.detail->>'on_hold' AS double precision)",
        in_statuses=("open", "on_hold"),
    ),
    "agent_wait_time": Metric(
        "agent_wait_time",
        "hours",
        "solved",
        ("solves",),
        "CAST(e.detail->>'pending' AS double precision)",
        in_statuses=("pending",),
    ),
    "on_hold_time": Metric(
        "on_hold_time",
        "hours",
        "solved",
        ("solves",),
        "CAST(e.detail->>'on_hold' AS double precision)",
        in_statuses=("on_hold",),
    ),
    "csat": Metric("csat", "percent", "rated", ("satisfaction",), "e.value", kind="percent"),
    "one_touch": Metric("one_touch", "percent", "solved", ("solves",), "e.value", kind="percent"),
}
# The metrics the hourly rollups hold rows of.
ROLLED_METRICS = {name: m for name, m in METRICS.items() if m.rolled}
GROUPABLE = DIMENSIONS
# Fields a distribution can be asked for, each the ticket column of the same name.
DISTRIBUTION_FIELDS = DIMENSIONS
DEFAULT_PERCENTILES = (50, 95, 99)


def metrics_changed_by(event_types: Iterable[str], fields: Iterable[str] = ()) -> set[str]:
    """The metrics whose values a change with these events (and changed fields) moves."""
    types = set(event_types)
    changed = {m.name for m in METRICS.values() if m.rolled and m.event_type in types}
    changed |= {m.name for m in METRICS.values() if any(part in changed for part, _ in m.parts)}
    if "sentiment_score" in set(fields):
        changed.add("sentiment_score")
    return changed


def families_of(metric_names: Iterable[str]) -> set[str]:
    """The cache families an answer computed from these metrics depends on."""
    out: set[str] = set()
    for name in metric_names:
        out |= set(METRICS[name].families)
    return out
