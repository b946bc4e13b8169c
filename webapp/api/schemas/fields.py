"""Request fields shared by the analytics and export models: the vocabulary's words as Literals, and
filters, percentiles, dates and ranges that are parsed as they are validated (a 400 names the field)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, StrictInt, WithJsonSchema

from webapp.analytics.buckets import DEFAULT_RANGE_DAYS
from webapp.analytics.metrics import METRICS
from webapp.analytics.window import Window, canonical_window
from webapp.api.schemas.common import Strict, refused
from webapp.core.filters import FilterError, Filters, parse_filter, parse_filter_object
from webapp.core.timeutil import EARLIEST, LATEST
from webapp.core.vocabulary import CLOCKS, DASHBOARD_PERIODS, DIMENSIONS, GRANULARITIES, SNAPSHOT_TYPES

Granularity = Literal[GRANULARITIES]  # type: ignore[valid-type]
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]
Dimension = Literal[DIMENSIONS]  # type: ignore[valid-type]
SnapshotType = Literal[SNAPSHOT_TYPES]  # type: ignore[valid-type]
Period = Literal[tuple(DASHBOARD_PERIODS)]  # type: ignore[valid-type]
ClockName = Literal[CLOCKS]  # type: ignore[valid-type]

_START = (
    "ISO 8601 date or datetime; a date is local midnight, a naive time local wall-clock "
    "(default: 30 days before end)"
)
_END = "exclusive end, as start (default: the end of today in the time zone)"
_TZ = "IANA time zone buckets and dates are read in (default: the organization's)"
FILTER_PARAM_DOC = (
    'comma-separated values (one holding a comma in double quotes, as in CSV: `"returns, damaged",billing`);'
    " for assigned_to, `null` means unassigned"
)
FILTERS_DOC = "dimension -> value list (or comma-separated string); null = unassigned"
_VALUES = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    ]
}
_NULLABLE_TEXT = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}]}
# What start and end look like (timeutil.ISO_BOUND, with the digits each place allows and the years
# 1900 to 2199), for the document: the parser says what is wrong with a 30th of February.
ISO_PATTERN = {
    "pattern": (
        r"^\s*(19|2[01])\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
        r"([T ]([01]\d|2[0-3])(:[0-5]\d(:[0-5]\d(\.\d+)?)?)?"
        r"([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d(:[0-5]\d)?)?)?)?\s*$"
    )
}


def filter_param(name: str) -> Any:
    """The query parameter filtering on dimension `name`, parsed into its values."""

    def parse(raw: Any) -> list[str | None]:
        try:
            return parse_filter(name, raw)
        except FilterError as exc:
            raise refused(str(exc), exc.field) from exc

    return Annotated[list[str | None] | None, PlainValidator(parse), WithJsonSchema(_NULLABLE_TEXT)]


def _filter_object(raw: Any) -> Filters:
    if not isinstance(raw, dict):
        raise refused('filters must be an object, e.g. {"status": ["open"]}', "filters")
    try:
        return parse_filter_object(raw)
    except FilterError as exc:
        raise refused(str(exc), exc.field) from exc


FilterObject = Annotated[
    Filters,
    PlainValidator(_filter_object),
    WithJsonSchema(
        {"type": "object", "properties": dict.fromkeys(DIMENSIONS, _VALUES), "additionalProperties": False}
    ),
]


def percentiles_in_range(values: list[int]) -> list[int]:
    """Percentiles must lie in 1..99 (an own message: pydantic's bounds would name only one end)."""
    if not all(1 <= p <= 99 for p in values):
        raise refused("percentiles must be integers from 1 to 99, e.g. [50, 95, 99]", "percentiles")
    return values


Percentile = Annotated[StrictInt, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 99})]


_CLOCK = (
    "what durations are counted in: calendar (all elapsed time, the default) or business (the open "
    "hours of schedule_id, or of the organization's default schedule). Buckets do not change"
)
_SCHEDULE_ID = "the schedule whose open hours count with clock=business (default: the default schedule)"


class ClockFields(BaseModel):
    """The clock duration metrics and statistics are counted on."""

    clock: ClockName = Field(default="calendar", description=_CLOCK)
    schedule_id: int | None = Field(default=None, description=_SCHEDULE_ID)


class RangeFields(Strict):
    """The range and the time zone it is read in, as a request gives them."""

    start: str | None = Field(default=None, max_length=64, description=_START, json_schema_extra=ISO_PATTERN)
    end: str | None = Field(default=None, max_length=64, description=_END, json_schema_extra=ISO_PATTERN)
    tz: str | None = Field(default=None, max_length=64, description=_TZ)

    def window(
        self,
        *,
        default_tz: str,
        now: datetime,
        granularity: str | None = None,
        days: int = DEFAULT_RANGE_DAYS,
    ) -> Window:
        """The window the request asks for (see canonical_window)."""
        return canonical_window(
            self.start,
            self.end,
            tz=self.tz,
            default_tz=default_tz,
            now=now,
            granularity=granularity,
            days=days,
        )


def _iso_date(raw: Any) -> date:
    """An ISO 8601 date (YYYY-MM-DD) in the years the platform measures."""
    text = raw if isinstance(raw, str) else repr(raw)
    try:
        day = date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise refused(f"date {text[:40]!r} is not an ISO 8601 date (YYYY-MM-DD)", "date")
    if not EARLIEST.year <= day.year < LATEST.year:
        raise refused(f"date {raw} is outside the years 1900 to 2199 this platform measures", "date")
    return day


IsoDate = Annotated[
    date, PlainValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date", "maxLength": 10})
]
