"""Business-hours rollups: the duration metrics' hourly cells per schedule, and their schedule version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.models.base import Base

CELL_KEY = (
    "org_id",
    "schedule_id",
    "metric",
    "grain",
    "bucket_start",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
)


class BusinessMetric(Base):
    """One UTC hour of one duration metric counted in one schedule's open hours, for one combination
    of kept dimensions (the grain, as in analytics_metrics)."""

    __tablename__ = "analytics_business_metrics"
    __table_args__ = (
        Index(
            "uq_analytics_business_metrics_cell",
            *CELL_KEY,
            unique=True,
            postgresql_nulls_not_distinct=True,
            postgresql_include=["count", "sum", "min", "max"],
        ),
        Index(
            "ix_analytics_business_metrics_totals",
            "org_id",
            "schedule_id",
            "metric",
            "bucket_start",
            postgresql_include=["count", "sum", "min", "max"],
            postgresql_where=text("grain = 0"),
        ),
    )
    __mapper_args__ = {"primary_key": CELL_KEY}

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    schedule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("schedules.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(32))
    grain: Mapped[int] = mapped_column(SmallInteger)
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100))
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(BigInteger)
    sum: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    sketch: Mapped[bytes | None] = mapped_column(LargeBinary)


class BusinessValue(Base):
    """One duration measurement counted in one schedule's open hours, at its event's instant and with
    its dimensions: what an exact business read takes instead of counting open hours per event."""

    __tablename__ = "analytics_business_values"
    __table_args__ = (
        Index(
            "ix_analytics_business_values_read",
            "org_id",
            "schedule_id",
            "metric",
            "occurred_at",
            postgresql_include=["value"],
        ),
    )
    __mapper_args__ = {"primary_key": ("org_id", "schedule_id", "metric", "occurred_at")}

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    schedule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("schedules.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100))
    assigned_to: Mapped[str | None] = mapped_column(String(200))


class BusinessRollup(Base):
    """The schedule version a schedule's business rollups were built for (reads trust them only then)."""

    __tablename__ = "analytics_business_rollups"

    schedule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
