"""Request and response models of the auth, ticket, job and operations routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webapp.models.jobs import JOB_KINDS, JOB_STATES

Status = Literal["open", "pending", "on_hold", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Channel = Literal["email", "chat", "phone", "web", "social", "api"]
Role = Literal["viewer", "agent", "admin"]

MAX_PAGE = 500


class Strict(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


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


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int


# --- tickets --------------------------------------------------------------

Sentiment = float | None
_sentiment_field = Field(default=None, ge=-1, le=1, allow_inf_nan=False)


class TicketFields(Strict):
    subject: str | None = Field(default=None, max_length=1000)
    status: Status | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    category: str | None = Field(default=None, min_length=1, max_length=100)
    assigned_to: str | None = Field(default=None, min_length=1, max_length=200)
    sentiment_score: float | None = _sentiment_field
    created_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None

    @field_validator("category", "assigned_to")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


class TicketCreate(TicketFields):
    pass


class TicketUpdate(TicketFields):
    pass


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


class TicketListQuery(Strict):
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    category: str | None = None
    assigned_to: str | None = None
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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    state: str
    deduplicated: bool = False


class JobListQuery(Strict):
    state: str | None = None
    kind: str | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class JobList(BaseModel):
    items: list[Job]
    next_cursor: str | None


# --- operations -----------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: dict[str, Any]
    redis: dict[str, Any]
    broker: dict[str, Any]
    workers: dict[str, Any]
    beat: dict[str, Any]
