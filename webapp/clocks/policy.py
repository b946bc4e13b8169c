"""The SLA policy of an organization: its clock, pause statuses and targets per priority.

An organization that never set one has the default policy: the per-priority first response and
resolution targets of the first contract (organizations.sla_targets over the platform defaults, as
webapp.clocks.first_contract reads them), next_reply not measured, the calendar clock, no pauses. The policy
in force when an evaluation runs is the one used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from webapp.clocks import pending
from webapp.clocks.business_time import NEVER, Timeline, from_us, to_us
from webapp.clocks.first_contract import targets_for
from webapp.clocks.schedules import ClockError, get_schedule, lock_organization, timeline
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import PRIORITIES, RESOLVED_STATUSES, STATUSES
from webapp.models import Organization, Schedule, SlaPolicy

SLA_METRICS = ("first_reply", "next_reply", "resolution")
SLA_STATES = ("achieved", "breached", "active", "paused")
TARGET_KEYS = {metric: f"{metric}_hours" for metric in SLA_METRICS}
UNSOLVED_STATUSES = tuple(s for s in STATUSES if s not in RESOLVED_STATUSES)
# Ten years: a target past it is a typing error, and its breach would fall beyond the platform's years.
MAX_TARGET_HOURS = 87_600.0


@dataclass(frozen=True)
class Policy:
    """The targets (hours, None = not measured) per priority and metric, and the clock they run on."""

    schedule_id: int | None
    pause_statuses: tuple[str, ...]
    targets: dict[str, dict[str, float | None]]
    version: int = 0
    updated_at: datetime | None = None
    is_default: bool = True

    @property
    def clock_name(self) -> str:
        """ "calendar", or "business" when a schedule's hours count."""
        return "calendar" if self.schedule_id is None else "business"

    def target(self, priority: str, metric: str) -> float | None:
        """The target in hours of `metric` for tickets of `priority`; None: not measured."""
        return self.targets.get(priority, {}).get(TARGET_KEYS[metric])

    def to_dict(self) -> dict[str, Any]:
        """The policy as GET /sla-policy answers it."""
        return {
            "schedule_id": self.schedule_id,
            "policy_clock": self.clock_name,
            "pause_statuses": list(self.pause_statuses),
            "targets": self.targets,
            "default": self.is_default,
            "version": self.version,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


class Clock(Protocol):
    """Where an instant lies on a clock (microseconds run since a fixed origin), and back."""

    def position(self, instant: datetime) -> int:
        """Microseconds the clock has run at `instant`."""
        ...

    def reaches(self, position: int) -> datetime | None:
        """The first instant at which the clock reads `position` (None: not before 2200)."""
        ...

    def passes(self, position: int) -> datetime | None:
        """The first instant after which the clock reads more than `position` (None: not before 2200)."""
        ...


class CalendarClock:
    """Every microsecond counts."""

    def position(self, instant: datetime) -> int:
        """Microseconds since the Unix epoch."""
        return to_us(instant)

    def reaches(self, position: int) -> datetime | None:
        """The instant itself."""
        return from_us(position)

    def passes(self, position: int) -> datetime | None:
        """The instant itself: the clock runs on from every instant."""
        return from_us(position)


class BusinessClock:
    """Only a schedule's open time counts."""

    def __init__(self, spans: Timeline) -> None:
        self.spans = spans

    def position(self, instant: datetime) -> int:
        """Open microseconds before `instant`."""
        return int(self.spans.open_before(np.int64(to_us(instant))))

    def reaches(self, position: int) -> datetime | None:
        """The first instant the clock reads `position`: at a span's end when it is reached exactly
        at closing time (None: not before 2200)."""
        at = int(self.spans.reach(np.int64(position)))
        return None if at == NEVER else from_us(at)

    def passes(self, position: int) -> datetime | None:
        """Where the clock reaches `position`, or the next opening when that is closing time (the
        clock stands still until then) (None: not before 2200)."""
        at = int(self.spans.reach(np.int64(position), after=True))
        return None if at == NEVER else from_us(at)


def default_policy(org: Organization) -> Policy:
    """The policy of an organization that never set one."""
    old = targets_for(org.sla_targets)
    targets = {
        priority: {
            "first_reply_hours": old[priority]["first_response_hours"],
            "next_reply_hours": None,
            "resolution_hours": old[priority]["resolution_hours"],
        }
        for priority in PRIORITIES
    }
    return Policy(schedule_id=None, pause_statuses=(), targets=targets)


def policy_for(session: Session, org_id: int) -> Policy:
    """The policy in force for the organization now."""
    row = session.get(SlaPolicy, org_id, populate_existing=True)
    if row is None:
        org = session.get(Organization, org_id)
        if org is None:
            raise ClockError("organization not found", status=404)
        return default_policy(org)
    return Policy(
        schedule_id=row.schedule_id,
        pause_statuses=tuple(row.pause_statuses),
        targets=row.targets,
        version=row.version,
        updated_at=row.updated_at,
        is_default=False,
    )


def clock_for(session: Session, org_id: int, policy: Policy) -> Clock:
    """The clock the policy's targets run on."""
    if policy.schedule_id is None:
        return CalendarClock()
    schedule = session.get(Schedule, policy.schedule_id)
    if schedule is None or schedule.org_id != org_id:
        raise ClockError("the SLA policy's schedule no longer exists", status=409)
    return BusinessClock(timeline(schedule))


def put_policy(
    session: Session,
    org_id: int,
    *,
    schedule_id: int | None,
    pause_statuses: list[str],
    targets: dict[str, dict[str, float | None]],
) -> Policy:
    """Replace the organization's policy and mark its tickets that may hold a running target."""
    pauses = _pause_statuses(pause_statuses)
    checked = _targets(targets)
    lock_organization(session, org_id)
    if schedule_id is not None and get_schedule(session, org_id, schedule_id) is None:
        raise ClockError("schedule not found", field="schedule_id", status=404)
    row = session.get(SlaPolicy, org_id, with_for_update=True)
    if row is None:
        row = SlaPolicy(org_id=org_id, version=0)
        session.add(row)
    row.schedule_id = schedule_id
    row.pause_statuses = list(pauses)
    row.targets = checked
    row.version += 1
    row.updated_at = utcnow()
    session.flush()
    pending.mark_organization(session, org_id)
    return policy_for(session, org_id)


def _pause_statuses(statuses: list[str]) -> tuple[str, ...]:
    for index, status in enumerate(statuses):
        if status not in UNSOLVED_STATUSES:
            raise ClockError(
                f"pause_statuses.{index} {status!r} is not one of the unsolved statuses"
                f" {', '.join(UNSOLVED_STATUSES)}",
                field=f"pause_statuses.{index}",
            )
        if status in statuses[:index]:
            raise ClockError(
                f"pause_statuses.{index} {status!r} is given twice", field=f"pause_statuses.{index}"
            )
    return tuple(s for s in UNSOLVED_STATUSES if s in statuses)


def _targets(targets: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for priority in PRIORITIES:
        given = targets.get(priority)
        if given is None:
            raise ClockError(
                f"targets.{priority} is missing: give every priority", field=f"targets.{priority}"
            )
        out[priority] = {}
        for key in TARGET_KEYS.values():
            hours = given.get(key)
            where = f"targets.{priority}.{key}"
            if hours is not None and not (math.isfinite(hours) and 0 < hours <= MAX_TARGET_HOURS):
                raise ClockError(
                    f"{where} must be a positive number of hours up to {MAX_TARGET_HOURS:g}, or null",
                    field=where,
                )
            out[priority][key] = None if hours is None else float(hours)
    unknown = sorted(set(targets) - set(PRIORITIES))
    if unknown:
        raise ClockError(f"targets.{unknown[0]} is not a priority", field=f"targets.{unknown[0]}")
    return out
