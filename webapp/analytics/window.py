"""The window of an analytics read: [start, end) in one time zone, at one granularity or none.

Every read, export and aggregation gets its window from `canonical_window`, once, from the values the
client sent; it travels as a `Window` from then on. Only where it must become JSON (a cache key, a
job's params) is it written with `params()`, and only a job reads it back with `from_params()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from webapp.analytics.buckets import (
    DEFAULT_RANGE_DAYS,
    Buckets,
    check_bucket_count,
    make_buckets,
    previous_period_start,
    resolve_range,
)
from webapp.core.timeutil import TimeError, parse_datetime, zone


class QueryError(ValueError):
    """A request the analytics cannot answer as asked; `field` names the culprit, `status` the answer."""

    def __init__(self, message: str, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Window:
    """[start, end) as UTC instants, the zone buckets and dates are read in, and the granularity."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    granularity: str | None = None

    def buckets(self, granularity: str | None = None) -> Buckets:
        """The window's buckets at its granularity (or at `granularity`, for a read that picks its own)."""
        chosen = granularity or self.granularity
        if chosen is None:
            raise ValueError("a window without a granularity has no buckets")
        return make_buckets(chosen, self.start, self.end, self.tz)

    def previous_start(self) -> datetime:
        """Where the period before this one starts (as many local days before, or as long before)."""
        return previous_period_start(self.start, self.end, self.tz).astimezone(UTC)

    def local_dates(self) -> tuple[date, date]:
        """The local dates of start and end."""
        return self.start.astimezone(self.tz).date(), self.end.astimezone(self.tz).date()

    def echo(self) -> dict[str, str]:
        """The window as answers state it: the zone, and start and end with its offset."""
        return {
            "timezone": self.tz.key,
            "start": self.start.astimezone(self.tz).isoformat(),
            "end": self.end.astimezone(self.tz).isoformat(),
        }

    def params(self) -> dict[str, Any]:
        """The window as JSON for cache keys and job params (UTC, so one instant is one key)."""
        params: dict[str, Any] = {
            "tz": self.tz.key,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }
        if self.granularity is not None:
            params["granularity"] = self.granularity
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Window:
        """The window `params()` wrote (a job's params, a popular query to refresh)."""
        return cls(
            datetime.fromisoformat(params["start"]).astimezone(UTC),
            datetime.fromisoformat(params["end"]).astimezone(UTC),
            zone(params["tz"]),
            params.get("granularity"),
        )


def canonical_window(
    start: str | None,
    end: str | None,
    *,
    tz: str | None,
    default_tz: str,
    now: datetime,
    granularity: str | None = None,
    days: int = DEFAULT_RANGE_DAYS,
) -> Window:
    """The window of a request: its zone (else `default_tz`) and range (default: the `days` local days
    up to the end of today), refused with TimeError or BucketError when it cannot be read, before any
    query: a bad time, start not before end, or more buckets than a series may have."""
    try:
        zone_info = zone(tz if tz is not None else default_tz)
    except TimeError as exc:
        raise TimeError(str(exc), "tz") from None
    # Given empty ("start="), a bound is refused as any other bad time, not taken as left out.
    first = parse_datetime(start, zone_info, "start") if start is not None else None
    last = parse_datetime(end, zone_info, "end") if end is not None else None
    first, last = resolve_range(first, last, zone_info, now, days=days)
    if granularity is not None:
        check_bucket_count(granularity, first, last, zone_info)
    return Window(first.astimezone(UTC), last.astimezone(UTC), zone_info, granularity)
