"""The fields a ticket is written with, validated the same way by the API and by imports."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webapp.core.vocabulary import CHANNELS, PRIORITIES, STATUSES

Status = Literal[STATUSES]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class TicketFields(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=1000)
    status: Status | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    category: str | None = Field(default=None, min_length=1, max_length=100)
    assigned_to: str | None = Field(default=None, min_length=1, max_length=200)
    # Strict: true or "0.5" is not a score (a CSV import converts its text cells first).
    sentiment_score: float | None = Field(default=None, ge=-1, le=1, allow_inf_nan=False, strict=True)
    created_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None

    @field_validator("created_at", "first_response_at", "resolved_at", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        # pydantic would read a number (or a string of digits) as Unix time: 0 became 1970.
        if value is None or isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError("must be an ISO 8601 date-time text, e.g. 2026-03-01T09:30:00+01:00")
        return value

    @field_validator("category", "assigned_to")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


class TicketCreate(TicketFields):
    """The fields of a new ticket (POST /tickets, each imported row)."""


class TicketUpdate(TicketFields):
    """The fields a PATCH changes; those it leaves out stay."""
