"""The fields a ticket is written with, validated the same way by the API and by imports."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webapp.core.patch_schema import patch_body
from webapp.core.vocabulary import CHANNELS, PRIORITIES, REPLY_AUTHORS, STATUSES

Status = Literal[STATUSES]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# An offset with seconds, as the platform writes old local mean times (Monrovia's -00:44:30 before
# 1972) in exports and answers: pydantic's parser refuses it, Python's reads it.
_SECONDS_OFFSET = re.compile(r"[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?[+-](0\d|1\d|2[0-3]):[0-5]\d:[0-5]\d$")
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Author = Literal[REPLY_AUTHORS]  # type: ignore[valid-type]
# Replies and status changes one imported ticket may carry.
MAX_ENTRIES = 1000


def _iso_text(value: object) -> object:
    """pydantic would read a number (or a string of digits) as Unix time: 0 became 1970. A time whose
    offset has seconds (what the platform writes for a local mean time) is read here: a ticket export
    of such times could not be imported back."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time text, e.g. 2026-03-01T09:30:00+01:00")
    if _SECONDS_OFFSET.search(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # pydantic says what is wrong with it
    return value


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

    _times = field_validator("created_at", "first_response_at", "resolved_at", mode="before")(_iso_text)

    @field_validator("category", "assigned_to")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


class TicketCreate(TicketFields):
    """The fields of a new ticket (POST /tickets, each imported row)."""


class ReplyFields(BaseModel):
    """A reply: by an agent or the customer, public unless said, at a given time for back-fills."""

    model_config = ConfigDict(extra="forbid")

    author: Author
    at: datetime | None = None
    public: bool = Field(default=True, strict=True)

    _times = field_validator("at", mode="before")(_iso_text)


class SatisfactionFields(BaseModel):
    """A satisfaction rating, 1 to 5 (4 and 5 are good); the one with the latest `at` stands."""

    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5, strict=True)
    comment: str | None = Field(default=None, max_length=2000)
    at: datetime | None = None

    _times = field_validator("at", mode="before")(_iso_text)


class StatusEntry(BaseModel):
    """One entry of an imported status history."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    at: datetime

    _times = field_validator("at", mode="before")(_iso_text)


class ImportedTicket(TicketCreate):
    """An imported row: a ticket's fields, and its replies, rating and status history if known."""

    replies: list[ReplyFields] | None = Field(default=None, max_length=MAX_ENTRIES)
    satisfaction: SatisfactionFields | None = None
    status_history: list[StatusEntry] | None = Field(default=None, min_length=1, max_length=MAX_ENTRIES)


class TicketUpdate(TicketFields):
    """The fields a PATCH changes; those it leaves out stay. Null clears the subject, the assignee or
    the sentiment and is refused for the others. `created_at` may be sent only with the ticket's own
    value: a ticket's creation is fixed once it exists (every measurement runs from it), so another
    value is a 400."""

    model_config = ConfigDict(
        json_schema_extra=patch_body(nullable=("subject", "assigned_to", "sentiment_score"))
    )
