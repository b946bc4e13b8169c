"""Request and response models of the alert routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from webapp.api.schemas.common import MAX_PAGE, Strict
from webapp.api.schemas.fields import FILTERS_DOC, FilterObject, MetricName
from webapp.core.patch_schema import patch_body
from webapp.core.vocabulary import ALERT_GRANULARITIES, ALERT_STATES, CHANGE_DIRECTIONS, THRESHOLDS
from webapp.models.base import MAX_ID

AlertGranularity = Literal[ALERT_GRANULARITIES]  # type: ignore[valid-type]
AlertState = Literal[ALERT_STATES]  # type: ignore[valid-type]
MAX_NAME = 200
MAX_CHANNELS = 20
_ID = Field(ge=1, le=MAX_ID)


class ThresholdCondition(Strict):
    """`above`: the bucket's value is strictly greater than `value`; `below`: strictly less."""

    type: Literal[THRESHOLDS]  # type: ignore[valid-type]
    value: float = Field(strict=True, allow_inf_nan=False)


class ChangeCondition(Strict):
    """The change in percent against the bucket before (undefined, so not met, when that one is 0 or
    has no value): `up` at least +value, `down` at most -value, `either` at least `value` in size."""

    type: Literal["change_pct"]
    direction: Literal[CHANGE_DIRECTIONS]  # type: ignore[valid-type]
    value: float = Field(gt=0, le=1_000_000, strict=True, allow_inf_nan=False)


class AnomalyCondition(Strict):
    """The anomaly score |x - median(B)| / (1.4826 * MAD(B)) is at least `score`; B is the same bucket in
    the `baseline_periods` periods before (hourly: the same hour of the week; daily: the same weekday;
    weekly: the weeks before). No score (not met) when MAD is 0 or B has fewer values."""

    type: Literal["anomaly"]
    score: float = Field(default=3.0, gt=0, le=1000, strict=True, allow_inf_nan=False)
    baseline_periods: StrictInt = Field(default=4, ge=2, le=52)


Condition = Annotated[ThresholdCondition | ChangeCondition | AnomalyCondition, Field(discriminator="type")]


class WebhookChannel(Strict):
    type: Literal["webhook"]
    webhook_id: StrictInt = _ID


class WebsocketChannel(Strict):
    type: Literal["websocket"]


Channel = Annotated[WebhookChannel | WebsocketChannel, Field(discriminator="type")]


class AlertCreate(Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    metric: MetricName
    filters: FilterObject = Field(default_factory=dict, description=FILTERS_DOC)
    granularity: AlertGranularity
    condition: Condition
    min_count: StrictInt = Field(
        default=0, ge=0, le=10**12, description="a bucket counting fewer measurements meets no condition"
    )
    channels: list[Channel] = Field(max_length=MAX_CHANNELS)
    enabled: StrictBool = True


class AlertUpdate(Strict):
    model_config = ConfigDict(json_schema_extra=patch_body())

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    metric: MetricName | None = None
    filters: FilterObject | None = Field(default=None, description=FILTERS_DOC)
    granularity: AlertGranularity | None = None
    condition: Condition | None = None
    min_count: StrictInt | None = Field(default=None, ge=0, le=10**12)
    channels: list[Channel] | None = Field(default=None, max_length=MAX_CHANNELS)
    enabled: StrictBool | None = None


class Alert(BaseModel):
    id: int
    name: str
    metric: str
    filters: dict[str, list[str | None]]
    granularity: AlertGranularity
    condition: Condition
    min_count: int
    channels: list[Channel]
    enabled: bool
    state: AlertState
    evaluated_until: datetime = Field(description="buckets starting from here on are still to be evaluated")
    last_evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AlertList(BaseModel):
    items: list[Alert]


class AlertEvent(BaseModel):
    state: AlertState
    bucket: datetime = Field(description="the bucket's start, in the organization's zone")
    bucket_end: datetime
    value: float | None
    count: int
    score: float | None = Field(description="the anomaly score (anomaly rules)")
    change_pct: float | None = Field(description="the change against the bucket before (change_pct rules)")
    at: datetime = Field(description="when it was recorded (a simulation: when the bucket closed)")


class AlertEventsQuery(Strict):
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)


class AlertEvents(BaseModel):
    items: list[AlertEvent]


class SimulateRequest(Strict):
    start: str = Field(max_length=64, description="ISO 8601 date or datetime, in the organization's zone")
    end: str = Field(max_length=64, description="exclusive end, as start")


class Simulation(BaseModel):
    transitions: list[AlertEvent]
    buckets: int = Field(description="how many closed buckets were evaluated")
