"""Alert rules on metrics and the state transitions they recorded."""

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
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webapp.core.vocabulary import ALERT_GRANULARITIES, ALERT_STATES
from webapp.models.base import Base
from webapp.models.tickets import one_of


class AlertRule(Base):
    """A condition on one metric's closed buckets; `state` is where its last evaluated bucket left it."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint(one_of("granularity", ALERT_GRANULARITIES), name="granularity"),
        CheckConstraint(one_of("state", ALERT_STATES), name="state"),
        Index("ix_alert_rules_org_id", "org_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(64))
    # Parsed filters (dimension -> sorted values), as every analytics read takes them.
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    granularity: Mapped[str] = mapped_column(String(16))
    # {"type": "above" | "below", "value"} | {"type": "change_pct", "direction", "value"} |
    # {"type": "anomaly", "score", "baseline_periods"}
    condition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    min_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # [{"type": "webhook", "webhook_id": 1} | {"type": "websocket"}]
    channels: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(8), default="ok")
    # Buckets starting at or after this instant are still to be evaluated: each is evaluated once.
    evaluated_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AlertEvent(Base):
    """One transition of a rule (into `state`) at the bucket that made it; one per rule and bucket
    (its start and end)."""

    __tablename__ = "alert_events"
    __table_args__ = (
        CheckConstraint(one_of("state", ALERT_STATES), name="state"),
        # A start two granularities share (an hour and its day, after the rule moved): ends differ.
        UniqueConstraint("rule_id", "bucket", "bucket_end"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alert_rules.id", ondelete="CASCADE"))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(8))
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    bucket_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float | None] = mapped_column(Float)
    change_pct: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
