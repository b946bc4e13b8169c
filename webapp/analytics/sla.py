"""SLA targets per organization and priority, and compliance over the tickets created in a range.

A ticket meets its first-response (resolution) target when first_response_at (resolved_at) is at
most the target's hours after created_at. One not yet answered (resolved) is breached once
created_at + target lies before `now`, and pending (left out of compliance) until then. The
ticket's current priority picks the target; a reopened ticket is unresolved again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from webapp.analytics.sql import filter_sql
from webapp.clocks.first_contract import DEFAULT_TARGETS, TARGET_KEYS, targets_for
from webapp.core.filters import Filters
from webapp.core.vocabulary import PRIORITIES

log = logging.getLogger(__name__)
__all__ = ["DEFAULT_TARGETS", "KINDS", "TARGET_KEYS", "compliance", "targets_for"]

KINDS = ("first_response", "resolution")


def _outcome(met: int, breached: int, pending: int) -> dict[str, Any]:
    judged = met + breached
    return {
        "met": met,
        "breached": breached,
        "pending": pending,
        "compliance": met / judged if judged else None,
    }


def compliance(
    session: Session,
    *,
    org_id: int,
    start: datetime,
    end: datetime,
    filters: Filters,
    targets: dict[str, dict[str, float]],
    now: datetime,
) -> dict[str, Any]:
    """Met / breached / pending / compliance for first response and resolution, overall and by priority."""
    params: dict[str, Any] = {
        "org_id": org_id,
        "start": start,
        "end": end,
        "now": now,
        "priorities": list(PRIORITIES),
        "fr_hours": [targets[p]["first_response_hours"] for p in PRIORITIES],
        "res_hours": [targets[p]["resolution_hours"] for p in PRIORITIES],
    }
    counts = []
    for kind, column in (("first_response", "first_response_at"), ("resolution", "resolved_at")):
        deadline = f"t.created_at + s.{kind}_target"
        counts += [
            f"count(*) FILTER (WHERE t.{column} IS NOT NULL AND t.{column} <= {deadline}) AS {kind}_met",
            f"count(*) FILTER (WHERE (t.{column} IS NOT NULL AND t.{column} > {deadline})"
            f" OR (t.{column} IS NULL AND {deadline} < :now)) AS {kind}_breached",
            f"count(*) FILTER (WHERE t.{column} IS NULL AND {deadline} >= :now) AS {kind}_pending",
        ]
    sql = text(
        f"SELECT t.priority, {', '.join(counts)} FROM tickets t JOIN ("
        " SELECT priority, make_interval(secs => fr * 3600) AS first_response_target,"
        " make_interval(secs => res * 3600) AS resolution_target"
        " FROM unnest(CAST(:priorities AS text[]), CAST(:fr_hours AS double precision[]),"
        " CAST(:res_hours AS double precision[])) AS x(priority, fr, res)"
        ") s ON s.priority = t.priority"
        " WHERE t.org_id = :org_id AND t.created_at >= :start AND t.created_at < :end"
        f"{filter_sql('t', filters, params)} GROUP BY t.priority"
    )
    rows = {row.priority: row._mapping for row in session.execute(sql, params)}
    by_priority: dict[str, Any] = {}
    totals = {kind: [0, 0, 0] for kind in KINDS}
    for priority in PRIORITIES:
        row = rows.get(priority)
        by_priority[priority] = {}
        for kind in KINDS:
            triple = [int(row[f"{kind}_{part}"]) if row else 0 for part in ("met", "breached", "pending")]
            by_priority[priority][kind] = _outcome(*triple)
            totals[kind] = [a + b for a, b in zip(totals[kind], triple, strict=True)]
    return {
        "overall": {kind: _outcome(*totals[kind]) for kind in KINDS},
        "by_priority": by_priority,
    }
