"""Request and response models of the SLA policy and per-ticket SLA routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt

from webapp.api.schemas.common import Strict
from webapp.clocks.policy import MAX_TARGET_HOURS

PausableStatus = Literal["open", "pending", "on_hold"]
SlaMetric = Literal["first_reply", "next_reply", "resolution"]
SlaState = Literal["achieved", "breached", "active", "paused"]
_HOURS = "hours on the policy's clock; null: not measured"


def _hours() -> Any:
    return Field(
        default=None, gt=0, le=MAX_TARGET_HOURS, strict=True, allow_inf_nan=False, description=_HOURS
    )


class PriorityTargets(Strict):
    first_reply_hours: float | None = _hours()
    next_reply_hours: float | None = _hours()
    resolution_hours: float | None = _hours()


class Targets(Strict):
    urgent: PriorityTargets
    high: PriorityTargets
    normal: PriorityTargets
    low: PriorityTargets


class PolicyPut(Strict):
    schedule_id: StrictInt | None = Field(
        default=None, description="business hours of this schedule; null: calendar"
    )
    pause_statuses: list[PausableStatus] = Field(default_factory=list, max_length=3)
    targets: Targets


class PriorityTargetsOut(BaseModel):
    first_reply_hours: float | None
    next_reply_hours: float | None
    resolution_hours: float | None


class Policy(BaseModel):
    schedule_id: int | None
    policy_clock: Literal["calendar", "business"]
    pause_statuses: list[PausableStatus]
    targets: dict[str, PriorityTargetsOut]
    default: bool
    version: int
    updated_at: datetime | None


class TargetState(BaseModel):
    metric: SlaMetric
    state: SlaState
    target_hours: float
    elapsed_hours: float
    breach_at: datetime | None
    pairs: int | None = Field(default=None, description="next_reply only: customer-to-agent pairs so far")


class TicketSla(BaseModel):
    ticket_id: int
    policy_clock: Literal["calendar", "business"]
    schedule_id: int | None
    evaluated_at: datetime
    targets: list[TargetState]
