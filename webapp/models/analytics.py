"""Read-side tables: hourly rollups and period snapshots."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    Uuid,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webapp.models.base import Base

CELL_KEY = (
    "org_id",
    "metric",
    "grain",
    "bucket_start",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_to",
)


class AnalyticsMetric(Base):
    """One UTC hour of one metric for one combination of dimension values.

    Partitioned by grain (migration 0005): the organization totals (grain 0) in
    analytics_metrics_totals, with a covering index for index-only reads; every other grain in
    analytics_metrics_by_dimension. Both partitions also index (org_id, metric, bucket_start).
    """

    __tablename__ = "analytics_metrics"
    __table_args__ = (
        Index(
            "uq_analytics_metrics_cell",
            *CELL_KEY,
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        # The partitions (made by the migration) keep free room in each page (fillfactor 50): imports
        # add to rows in place, and room in the page keeps those updates HOT.
        {"postgresql_partition_by": "LIST (grain)"},
    )
    # The cell key is the row's identity (there is no surrogate id).
    __mapper_args__ = {"primary_key": CELL_KEY}

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(32))
    # Bit set of the dimensions the row keeps (31: all five; 0: the hour's total).
    grain: Mapped[int] = mapped_column(SmallInteger, server_default="31")
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(100))
    assigned_to: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    sum: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    sketch: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AnalyticsSnapshot(Base):
    """The KPIs of one day, week or month of one organization, upserted on recompute."""

    __tablename__ = "analytics_snapshots"
    __table_args__ = (
        UniqueConstraint("org_id", "snapshot_type", "snapshot_date"),
        Index("ix_analytics_snapshots_org_period", "org_id", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    snapshot_type: Mapped[str] = mapped_column(String(16))
    snapshot_date: Mapped[date] = mapped_column(Date)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    definition_version: Mapped[int] = mapped_column(Integer, default=1)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The period as instants, and whether a write of events has reached it since it was computed
    # (set by a trigger on ticket_events, migration 0007; beat asks for stale snapshots again).
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stale: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The token of the snapshot job whose answer may be stored (the last to begin), and whether a write
    # reached the period since it began (migration 0034; see analytics.snapshots.begin_compute).
    computing: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    written: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AnalyticsRollupDirty(Base):
    """UTC hours whose rollups a write made stale; reads use raw events there until a refresh."""

    __tablename__ = "analytics_rollup_dirty"
    __table_args__ = (Index("ix_analytics_rollup_dirty_org_id", "org_id", "event_type", "lo"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(24))
    lo: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hi: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
