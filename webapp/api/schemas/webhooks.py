"""Request and response models of the webhook routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from webapp.api.schemas.common import MAX_PAGE, Strict
from webapp.core.patch_schema import patch_body
from webapp.core.vocabulary import DELIVERY_STATES, WEBHOOK_EVENTS
from webapp.webhooks.targets import MAX_URL_LENGTH

_URL = (
    "http(s) URL without credentials; refused when its host resolves to a private, loopback or "
    "link-local address (unless WEBHOOK_ALLOW_PRIVATE)"
)


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description=_URL)
    description: str = Field(default="", max_length=500)


class WebhookUpdate(Strict):
    model_config = ConfigDict(json_schema_extra=patch_body())

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH, description=_URL)
    description: str | None = Field(default=None, max_length=500)
    enabled: StrictBool | None = Field(
        default=None, description="true enables a disabled webhook again (its failure count starts over)"
    )


class Webhook(BaseModel):
    id: int
    url: str
    description: str
    enabled: bool
    consecutive_failures: int = Field(description="deliveries failed in a row (all their attempts spent)")
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="signs every delivery (Webhook-Signature); shown this once")


class WebhookList(BaseModel):
    items: list[Webhook]


class DeliveryAttempt(BaseModel):
    number: int
    at: datetime
    duration_ms: int
    address: str | None = Field(description="the address connected to")
    status_code: int | None
    error: str | None


class Delivery(BaseModel):
    id: str = Field(description="the body's id, the same on every attempt")
    type: Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]
    state: Literal[DELIVERY_STATES]  # type: ignore[valid-type]
    created_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    attempts: list[DeliveryAttempt]


class DeliveriesQuery(Strict):
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class DeliveryList(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


class DeliveryAccepted(BaseModel):
    delivery_id: str
