"""The support reports as cached reads: time in status and the agents report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from webapp.analytics import agent_report, cost, provenance, support
from webapp.analytics.metric_reads import CLOCK_TTL_SECONDS, ranged
from webapp.analytics.window import Window
from webapp.clocks.policy import policy_for
from webapp.core.filters import Filters
from webapp.core.timeutil import utcnow


@dataclass(frozen=True)
class TimeInStatusRead:
    """Hours in each unsolved status before the last solve, over the tickets last solved in the window."""

    route: ClassVar[str] = "time_in_status"
    ttl: ClassVar[int | None] = None
    window: Window
    filters: Filters
    schedule_id: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "schedule_id": self.schedule_id,
            **ranged(self.window, self.filters, False),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TimeInStatusRead:
        return cls(Window.from_params(p), p["filters"], p.get("schedule_id"))

    def families(self) -> set[str]:
        return {"solves", "schedules"}

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions(rollups=False)

    def compute(self, session: Session, org_id: int) -> Any:
        provenance.note_raw()
        statuses = support.time_in_status(
            session,
            org_id=org_id,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
            schedule_id=self.schedule_id,
        )
        return {"statuses": statuses}


@dataclass(frozen=True)
class AgentsRead:
    """Per assignee: solves, reply and resolution medians, SLA, csat, one-touch and reopen rates."""

    route: ClassVar[str] = "agents"
    # Its SLA verdicts are judged at the time of the read: pending ones turn breached as time passes.
    ttl: ClassVar[int | None] = CLOCK_TTL_SECONDS
    window: Window
    filters: Filters
    targets: dict[str, dict[str, float]]
    min_tickets: int = 5
    schedule_id: int | None = None
    # Medians from sketches above this many solves (agent_report); None: always exact.
    approximate_above: int | None = None
    # Checked once the agents are known (not part of the key: the answer is the same).
    max_cells: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "targets": self.targets,
            "min_tickets": self.min_tickets,
            "schedule_id": self.schedule_id,
            "approximate_above": self.approximate_above,
            **ranged(self.window, self.filters, False),
        }

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> AgentsRead:
        return cls(
            Window.from_params(p),
            p["filters"],
            p["targets"],
            p["min_tickets"],
            p.get("schedule_id"),
            p.get("approximate_above"),
        )

    def families(self) -> set[str]:
        return {"solves", "satisfaction", "response", "sla", "schedules", "dist_assigned_to"}

    def options(self) -> provenance.ReadOptions:
        return provenance.ReadOptions(rollups=False)

    def compute(self, session: Session, org_id: int) -> Any:
        rows = agent_report.agents(
            session,
            org_id=org_id,
            start=self.window.start,
            end=self.window.end,
            filters=self.filters,
            targets=self.targets,
            policy=policy_for(session, org_id),
            now=utcnow(),
            min_tickets=self.min_tickets,
            schedule_id=self.schedule_id,
            approximate_above=self.approximate_above,
        )
        cost.check_rows(len(rows), cost.AGENT_ROW_STATISTICS, 1, self.max_cells)
        return {"agents": rows}
