"""Tickets (current state), ticket_events (the log analytics reads), and each ticket's status history,
replies and satisfaction rating (what the derived events are computed from)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webapp.core.vocabulary import CHANNELS, DIMENSIONS, EVENT_TYPES, PRIORITIES, REPLY_AUTHORS, STATUSES
from webapp.models.base import Base


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK constraint's text: `column` holds one of the words `values`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        CheckConstraint("sentiment_score BETWEEN -1 AND 1", name="sentiment"),
        Index("ix_tickets_org_created", "org_id", "created_at"),
        Index("ix_tickets_org_id_desc", "org_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100))
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)

    def dimensions(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in DIMENSIONS}

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "channel": self.channel,
            "category": self.category,
            "assigned_to": self.assigned_to,
            "sentiment_score": self.sentiment_score,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "first_response_at": iso(self.first_response_at),
            "resolved_at": iso(self.resolved_at),
            "reopen_count": self.reopen_count,
        }


class TicketEvent(Base):
    """One change of a ticket, with the ticket's dimensions at that moment and its value in hours."""

    __tablename__ = "ticket_events"
    __table_args__ = (
        CheckConstraint(one_of("event_type", EVENT_TYPES), name="event_type"),
        Index("ix_ticket_events_org_occurred", "org_id", "occurred_at"),
        # With the value: an unfiltered duration read is an index-only scan (migration 0021).
        Index(
            "ix_ticket_events_org_type_occurred",
            "org_id",
            "event_type",
            "occurred_at",
            postgresql_include=["value"],
        ),
        Index("ix_ticket_events_ticket", "ticket_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100))
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TicketStatusChange(Base):
    """One entry of a ticket's status history: from `at` on, until the next entry, it had `status`.

    The first entry is at the ticket's creation; entries may arrive out of order (back-fills), so the
    history is read ordered by (at, id).
    """

    __tablename__ = "ticket_status_changes"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        Index("ix_ticket_status_changes_ticket_at", "ticket_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TicketReply(Base):
    """A reply on a ticket by an agent or the customer; private ones start and stop no clock."""

    __tablename__ = "ticket_replies"
    __table_args__ = (
        CheckConstraint(one_of("author", REPLY_AUTHORS), name="author"),
        Index("ix_ticket_replies_ticket_at", "ticket_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(16))
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "author": self.author,
            "public": self.public,
            "at": self.at.isoformat(),
        }


class TicketRating(Base):
    """A ticket's standing satisfaction rating: the one given with the latest `at`."""

    __tablename__ = "ticket_ratings"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),)

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "rating": self.rating,
            "good": self.rating >= 4,
            "comment": self.comment,
            "at": self.at.isoformat(),
        }
