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
    # The value is the length in hours of the interval that ends at the event (e.value), so a
    # business clock can count the same interval in open hours instead (analytics.clock).
    duration: bool = False

    @property
    def is_count(self) -> bool:
        return self.value_sql is None


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
}
GROUPABLE = DIMENSIONS
# Fields a distribution can be asked for, each the ticket column of the same name.
DISTRIBUTION_FIELDS = DIMENSIONS
DEFAULT_PERCENTILES = (50, 95, 99)


def metrics_changed_by(event_types: Iterable[str], fields: Iterable[str] = ()) -> set[str]:
    """The metrics whose values a change with these events (and changed fields) moves."""
    types = set(event_types)
    changed = {m.name for m in METRICS.values() if m.event_type in types}
    if "sentiment_score" in set(fields):
        changed.add("sentiment_score")
    return changed


def families_of(metric_names: Iterable[str]) -> set[str]:
    """The cache families an answer computed from these metrics depends on."""
    out: set[str] = set()
    for name in metric_names:
        out |= set(METRICS[name].families)
    return out
