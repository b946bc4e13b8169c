"""Reads over the tickets' current values: distributions of a field, and the backlog."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics import ticket_counts
from webapp.analytics.metrics import DISTRIBUTION_FIELDS
from webapp.analytics.provenance import note_raw, note_rollup, rollups_allowed
from webapp.analytics.sql import column, filter_sql
from webapp.core.filters import Filters
from webapp.core.vocabulary import DIMENSION_VALUES, RESOLVED_STATUSES, STATUSES

# The resolved statuses as SQL literals (vocabulary words only, never input).
_DONE = ", ".join(f"'{status}'" for status in RESOLVED_STATUSES)


def distribution(
    session: Session, *, org_id: int, field: str, start: datetime, end: datetime, filters: Filters
) -> dict[str, Any]:
    """Current values of `field` over the tickets created in [start, end), with count and share."""
    name = column(field, DISTRIBUTION_FIELDS)
    counts: dict[str | None, int]
    if not filters and rollups_allowed():
        counts, edges = ticket_counts.counts(session, org_id=org_id, field=name, start=start, end=end)
        note_rollup()
        if edges:
            note_raw()
    else:
        params: dict[str, Any] = {"org_id": org_id, "start": start, "end": end}
        sql = text(
            f"SELECT t.{name} AS value, count(*) AS n FROM tickets t"
            " WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
            f"{filter_sql('t', filters, params)} GROUP BY t.{name}"
        )
        note_raw()
        counts = {row.value: int(row.n) for row in session.execute(sql, params)}
    # Enumerated fields list every allowed (or filtered-for) value, so charts keep their legend.
    for value in filters.get(field) or DIMENSION_VALUES.get(field, ()):
        counts.setdefault(value, 0)
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return {
        "field": field,
        "total": total,
        "values": [
            {"value": value, "count": count, "share": count / total if total else None}
            for value, count in ordered
        ],
    }


def backlog(statuses: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's backlog KPI: the tickets created in the period that are not resolved or closed
    now, by current status (the contract's first meaning; the `backlog` metric's series counts every
    ticket open at each bucket's end), from the period's status distribution, which counts the same
    tickets by the same current status (at 10M tickets, counting them again took 19 ms)."""
    counts = {item["value"]: item["count"] for item in statuses["values"]}
    by_status = {status: counts.get(status, 0) for status in STATUSES if status not in RESOLVED_STATUSES}
    return {"count": sum(by_status.values()), "by_status": by_status}
