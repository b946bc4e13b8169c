"""What every ticket write checks, and the error it refuses with: times and their order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from webapp.core.timeutil import as_aware, in_calendar, zone
from webapp.models import Organization

# Clocks of the clients drift; a timestamp this far ahead of ours is still "now".
CLOCK_SKEW = timedelta(minutes=5)
TIME_FIELDS = ("created_at", "first_response_at", "resolved_at")


class TicketError(ValueError):
    """A change the platform refuses; `status` is the HTTP status that fits it."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def checked_times(org: Organization, fields: dict[str, Any], now: datetime) -> dict[str, datetime]:
    """The time fields given in `fields`, aware (a naive one is the organization's wall clock) and in UTC.

    Raises TicketError for a time outside the calendar or in the future.
    """
    tz = zone(org.timezone)
    latest = now + CLOCK_SKEW
    out: dict[str, datetime] = {}
    for name in TIME_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        try:
            # In UTC: two times that share one zone object subtract as wall-clock times in Python,
            # and a duration across a clock change would be an hour off.
            aware = in_calendar(as_aware(value, tz, name), name)
        except ValueError as exc:
            raise TicketError(str(exc), field=name) from exc
        if aware > latest:
            raise TicketError(f"{name} is in the future", field=name)
        out[name] = aware
    return out


def checked_instant(org: Organization, value: datetime, name: str, now: datetime) -> datetime:
    """One given time, aware (naive is the organization's wall clock) and in UTC; not in the future."""
    try:
        aware = in_calendar(as_aware(value, zone(org.timezone), name), name)
    except ValueError as exc:
        raise TicketError(str(exc), field=name) from exc
    if aware > now + CLOCK_SKEW:
        raise TicketError(f"{name} is in the future", field=name)
    return aware


def check_order(created: datetime, first_response: datetime | None, resolved: datetime | None) -> None:
    """Raise TicketError unless the first response and the resolution come after the creation."""
    if first_response is not None and first_response < created:
        raise TicketError("first_response_at is before created_at", field="first_response_at")
    if resolved is not None and resolved < created:
        raise TicketError("resolved_at is before created_at", field="resolved_at")
