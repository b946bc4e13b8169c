"""The socket's protocol: close codes and limits, the envelope of every server message, and the
client's messages decoded and checked (a bad one is a MessageError, answered with an `error`)."""

from __future__ import annotations

from typing import Any

from webapp.analytics.metrics import METRICS
from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.spec import check_json_text
from webapp.core import strict_json
from webapp.core.filters import FilterError, parse_filters
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import CLOCKS
from webapp.live.connection import Connection, valid_id

MAX_MESSAGE_BYTES = 64 * 1024
MIN_INTERVAL = 5
MAX_INTERVAL = 3600
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

Filters = dict[str, list[str | None]]


class MessageError(ValueError):
    """A client message the server refuses; its text is the `error` the client gets."""


def envelope(conn: Connection, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A server message: its type, organization, time, data and the event id to resume from."""
    return {
        "type": kind,
        "organization_id": conn.org_id,
        "timestamp": utcnow().isoformat(),
        "data": data,
        "id": conn.last_sent_id,
    }


def send_error(conn: Connection, message: str) -> None:
    """Tell the client what went wrong; the socket stays open."""
    conn.send(envelope(conn, "error", {"message": message}))


def decode(raw: str | bytes) -> dict[str, Any]:
    """A client message as a JSON object with a type, holding only text PostgreSQL can store."""
    try:
        # The platform's strict decoder: deep nesting is a JsonError, not a RecursionError.
        message = strict_json.loads(raw)
    except strict_json.JsonError as exc:
        raise MessageError(f"messages must be JSON objects: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise MessageError("messages must be JSON objects with a type")
    try:
        # As in request bodies: text PostgreSQL cannot store would fail deep inside a query.
        check_json_text(message, "the message")
    except ApiError as exc:
        raise MessageError(exc.message) from exc
    return message


# What a subscribe message may hold.
SUBSCRIBE_FIELDS = frozenset({"type", "metrics", "interval", "filters", "clock", "schedule_id"})


def subscription(message: dict[str, Any]) -> tuple[set[str], Filters, float]:
    """The metrics, filters and interval (seconds) a subscribe message asks for."""
    unknown_fields = sorted(set(message) - SUBSCRIBE_FIELDS)
    if unknown_fields:
        # Ignored, a field such as group_by would answer something else than was asked for.
        allowed = ", ".join(sorted(SUBSCRIBE_FIELDS))
        raise MessageError(f"unknown field {unknown_fields[0]!r} in subscribe; allowed: {allowed}")
    metrics = message.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise MessageError(f"metrics must be a non-empty list; allowed: {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise MessageError(f"unknown metric {unknown[0]!r}; allowed: {', '.join(METRICS)}")
    interval = message.get("interval", 30)
    if not isinstance(interval, int | float) or isinstance(interval, bool):
        raise MessageError("interval must be a number of seconds")
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise MessageError(f"interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds")
    return set(metrics), _filters(message.get("filters") or {}), float(interval)


def subscription_clock(message: dict[str, Any]) -> tuple[str, int | None]:
    """The clock (calendar | business) and schedule_id a subscribe message asks for."""
    name = message.get("clock", "calendar")
    if name not in CLOCKS:
        raise MessageError(f"clock must be one of {', '.join(CLOCKS)}")
    schedule_id = message.get("schedule_id")
    if schedule_id is not None and (not isinstance(schedule_id, int) or isinstance(schedule_id, bool)):
        raise MessageError("schedule_id must be an integer")
    return name, schedule_id


def _filters(raw: Any) -> Filters:
    if not isinstance(raw, dict):
        raise MessageError("filters must be an object")
    try:
        filters = parse_filters(raw)
        extra = set(raw) - set(filters)
        if extra:
            raise FilterError(f"unknown filter {sorted(extra)[0]!r}", sorted(extra)[0])
    except FilterError as exc:
        raise MessageError(str(exc)) from exc
    return filters


def unsubscribed_metrics(message: dict[str, Any]) -> set[str]:
    """The metrics an unsubscribe message names."""
    metrics = message.get("metrics")
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise MessageError("unsubscribe needs a list of metric names")
    return set(metrics)


def event_id(value: Any) -> str:
    """The stream id a resume (or `?last_event_id=`) gives."""
    if not isinstance(value, str) or not valid_id(value):
        raise MessageError(
            "resume needs last_event_id, the id of the last message received: "
            '"<ms>-<seq>", two integers below 2**64'
        )
    return value
