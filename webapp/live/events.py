"""Per-organization event streams in Redis: publish, and read back from an id to resume."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from webapp.core.timeutil import utcnow

log = logging.getLogger(__name__)

# Enough history for a client that was away a few minutes to resume without gaps.
STREAM_MAXLEN = 10_000


def stream_key(org_id: int) -> str:
    """The Redis stream of the organization's events."""
    return f"an:events:{org_id}"


def publish(client: redis.Redis, org_id: int, event_type: str, data: dict[str, Any]) -> str | None:
    """Append an event to the organization's stream; its id, or None when Redis is unreachable."""
    fields = {
        "type": event_type,
        "organization_id": str(org_id),
        "timestamp": utcnow().isoformat(),
        "data": json.dumps(data, default=str),
    }
    try:
        event_id = client.xadd(stream_key(org_id), fields, maxlen=STREAM_MAXLEN, approximate=True)
    except redis.RedisError as exc:
        log.warning("event not published org=%s type=%s: %s", org_id, event_type, exc)
        return None
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def decode(event_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as the message clients receive."""
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return {
        "id": event_id.decode() if isinstance(event_id, bytes) else event_id,
        "type": text["type"],
        "organization_id": int(text["organization_id"]),
        "timestamp": text["timestamp"],
        "data": json.loads(text["data"]),
    }


def read_since(client: redis.Redis, org_id: int, last_id: str, count: int = 1000) -> list[dict[str, Any]]:
    """Events of the organization after `last_id`, oldest first."""
    entries = client.xrange(stream_key(org_id), min=f"({last_id}", count=count)
    return [decode(event_id, fields) for event_id, fields in entries]
