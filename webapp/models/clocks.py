"""Business-hours schedules with their open spans, SLA policies, running SLA clocks and recorded breaches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webapp.models.base import Base


class Schedule(Base):
    """Weekly business hours of an organization in one IANA zone, with holidays; one is the default."""

    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_org_id", "org_id", "id"),
        # At most one default per organization.
        Index("uq_schedules_default", "org_id", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # [{"day": "mon", "start": "08:00", "end": "17:00"}, ...] sorted by day and start.
    intervals: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    # [{"date": "2026-12-25", "name": "..."}, ...] sorted by date.
    holidays: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by every change: caches of its business time are keyed by (id, version).
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def to_dict(self) -> dict[str, Any]:
        """The schedule as the API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "timezone": self.timezone,
            "intervals": self.intervals,
            "holidays": self.holidays,
            "default": self.is_default,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class ScheduleSpan(Base):
    """One open span of a schedule in UTC, with the schedule's open time before it (the prefix sum).

    The open time before an instant t is the row with the last starts_at <= t: open_before_us plus
    the part of the span before t (SQL function business_open_seconds, migration 0006).
    """

    __tablename__ = "schedule_spans"

    schedule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    open_before_us: Mapped[int] = mapped_column(BigInteger)


class SlaPolicy(Base):
    """An organization's SLA policy; an organization without a row has the default policy."""

    __tablename__ = "sla_policies"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    # None: the calendar clock.
    schedule_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("schedules.id"))
    pause_statuses: Mapped[list[str]] = mapped_column(JSONB)
    # {priority: {"first_reply_hours": h | None, "next_reply_hours": ..., "resolution_hours": ...}}
    targets: Mapped[dict[str, dict[str, float | None]]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SlaClock(Base):
    """A running SLA target of a ticket and the instant it will pass its target, for the breach sweep."""

    __tablename__ = "sla_clocks"
    __table_args__ = (Index("ix_sla_clocks_breach_at", "breach_at"),)

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # When this run of the target began (creation, or the customer reply of a next_reply pair).
    cycle_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    breach_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SlaPendingTicket(Base):
    """A ticket whose SLA clocks must be worked out again: marked by a trigger on every ticket write
    (in the write's transaction) and by policy and schedule changes; cleared by the breach sweep."""

    __tablename__ = "sla_pending_tickets"
    __table_args__ = (Index("ix_sla_pending_tickets_org_id", "org_id"),)

    ticket_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SlaBreach(Base):
    """A target that ran past its limit, recorded once per run (with its sla_breached ticket event)."""

    __tablename__ = "sla_breaches"
    __table_args__ = (
        UniqueConstraint("ticket_id", "metric", "cycle_start"),
        Index("ix_sla_breaches_org_breach_at", "org_id", "breach_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(16))
    cycle_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    breach_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    target_hours: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
