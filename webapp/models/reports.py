"""Scheduled reports (an export on a cron schedule, delivered to a webhook) and their runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from webapp.core.vocabulary import REPORT_RUN_STATES, REPORT_TRIGGERS
from webapp.models.base import Base
from webapp.models.tickets import one_of


class ReportSchedule(Base):
    """An export made on a five-field cron schedule in an IANA zone and delivered as report.ready."""

    __tablename__ = "report_schedules"
    __table_args__ = (
        Index("ix_report_schedules_org_id", "org_id", "id"),
        Index("ix_report_schedules_due", "next_run_at", postgresql_where=text("enabled")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # {"format", "dataset", "query": {..., "range"?}} as the client gave it.
    export: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The export's job params as checked when saved; each run puts its own window in (reports.runs).
    export_params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # None once its webhook was deleted: the schedule is disabled then until it is given another.
    webhook_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("webhooks.id", ondelete="SET NULL"))
    skip_if_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReportRun(Base):
    """One run of a schedule: its export job, then its report.ready delivery (or why there is none)."""

    __tablename__ = "report_runs"
    __table_args__ = (
        CheckConstraint(one_of("trigger", REPORT_TRIGGERS), name="trigger"),
        CheckConstraint(one_of("state", REPORT_RUN_STATES), name="state"),
        Index("ix_report_runs_schedule", "schedule_id", "created_at"),
        Index("ix_report_runs_running", "job_id", postgresql_where=text("state = 'running'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("report_schedules.id", ondelete="CASCADE")
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="running")
    range_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    range_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
