"""Request and response models of the auth, ticket, job and operations routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

from webapp.core.vocabulary import JOB_KINDS, JOB_STATES, ROLES
from webapp.tickets.fields import Author, Channel, Priority, Status

Role = Literal[ROLES]  # type: ignore[valid-type]

MAX_PAGE = 500


class Strict(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def refused(message: str, field: str) -> PydanticCustomError:
    """A validation error with our own message, naming the field the 400 is about (details.field)."""
    return PydanticCustomError("invalid_value", "{message}", {"message": message, "field": field})


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- auth -----------------------------------------------------------------


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    # Only where users of several organizations share the email and the password (409 without it).
    org_id: StrictInt | None = Field(default=None, ge=1, le=2**31 - 1)  # no "2", 2.0 or true


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int


# --- tickets --------------------------------------------------------------


class Ticket(BaseModel):
    id: int
    subject: str
    status: Status
    priority: Priority
    channel: Channel
    category: str
    assigned_to: str | None
    sentiment_score: float | None
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    reopen_count: int


class Reply(BaseModel):
    id: int
    ticket_id: int
    author: Author
    public: bool
    at: datetime
    ticket: Ticket


class Satisfaction(BaseModel):
    ticket_id: int
    rating: int
    good: bool
    comment: str | None
    at: datetime


class TicketListQuery(Strict):
    status: str | None = Field(default=None, min_length=1)
    priority: str | None = Field(default=None, min_length=1)
    channel: str | None = Field(default=None, min_length=1)
    category: str | None = Field(default=None, min_length=1)
    assigned_to: str | None = Field(default=None, min_length=1)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class TicketList(BaseModel):
    items: list[Ticket]
    next_cursor: str | None


# --- jobs -----------------------------------------------------------------


class Job(BaseModel):
    id: str
    kind: Literal[JOB_KINDS]  # type: ignore[valid-type]
    state: Literal[JOB_STATES]  # type: ignore[valid-type]
    progress: float
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    cancel_requested: bool = Field(
        description="a cancel was asked (DELETE): a queued job is cancelled at once, a running one stops"
        " at its next checkpoint, or ends as it would when none is left"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    state: str
    deduplicated: bool = False


class JobListQuery(Strict):
    state: str | None = Field(default=None, min_length=1)
    kind: str | None = Field(default=None, min_length=1)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class JobList(BaseModel):
    items: list[Job]
    next_cursor: str | None


# --- operations -----------------------------------------------------------


class Health(BaseModel):
    """status and each part's `ok` for anyone; the parts' details only for an admin's bearer token."""

    status: Literal["ok", "degraded"]
    database: dict[str, Any] | None = None
    redis: dict[str, Any] | None = None
    broker: dict[str, Any] | None = None
    workers: dict[str, Any] | None = None
    beat: dict[str, Any] | None = None
