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


def _fields(org_id: int, event_type: str, data: dict[str, Any]) -> dict[str, str]:
    return {
        "type": event_type,
        "organization_id": str(org_id),
        "timestamp": utcnow().isoformat(),
        "data": json.dumps(data, default=str),
    }


def publish(client: redis.Redis, org_id: int, event_type: str, data: dict[str, Any]) -> str | None:
    """Append an event to the organization's stream; its id, or None when Redis is unreachable."""
    fields = _fields(org_id, event_type, data)
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


def xadd_command(org_id: int, event_type: str, data: dict[str, Any]) -> list[Any]:
    """The XADD that publishes the event (as publish does), for a caller that sends it itself."""
    args: list[Any] = ["XADD", stream_key(org_id), "MAXLEN", "~", STREAM_MAXLEN, "*"]
    for name, value in _fields(org_id, event_type, data).items():
        args += [name, value]
    return args


def event_id(reply: Any, org_id: int, event_type: str) -> str | None:
    """The id in the reply to an xadd_command, or None (logged) when the reply is an error."""
    if isinstance(reply, Exception):
        log.warning("event not published org=%s type=%s: %s", org_id, event_type, reply)
        return None
    return reply.decode() if isinstance(reply, bytes) else str(reply)


class Sent:
    """An event whose XADD is sent and whose reply is not read yet (see send)."""

    def __init__(self, pool: redis.ConnectionPool | None, conn: Any, org_id: int, event_type: str) -> None:
        self._pool, self._conn, self._org_id, self._type = pool, conn, org_id, event_type

    def done(self) -> str | None:
        """The event's id once Redis answered, or None when it could not be published. Call it once."""
        if self._pool is None:
            return None
        pool, conn, self._pool = self._pool, self._conn, None
        try:
            event_id = conn.read_response()
        except redis.RedisError as exc:
            conn.disconnect()
            log.warning("event not published org=%s type=%s: %s", self._org_id, self._type, exc)
            return None
        finally:
            pool.release(conn)
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def send(client: redis.Redis, org_id: int, event_type: str, data: dict[str, Any]) -> Sent:
    """Like publish, but only send the XADD: its reply is read by `done()` on what this returns.

    The event's bytes reach Redis before anything the caller sends after it, on any connection, and
    Redis runs everything readable before it waits again: so the event is in the stream by the time a
    task sent meanwhile reaches its worker, which then cannot publish ahead of it, and the two round
    trips overlap. Events that must follow this one in the stream are published after `done()`.
    """
    args = xadd_command(org_id, event_type, data)
    pool = client.connection_pool
    try:
        conn = pool.get_connection()
    except redis.RedisError as exc:
        log.warning("event not published org=%s type=%s: %s", org_id, event_type, exc)
        return Sent(None, None, org_id, event_type)
    for attempt in (1, 2):
        try:
            conn.send_command(*args)
            return Sent(pool, conn, org_id, event_type)
        except redis.RedisError as exc:
            # A connection the server dropped since its last use: once more on a fresh one.
            conn.disconnect()
            if attempt == 2 or not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                pool.release(conn)
                log.warning("event not published org=%s type=%s: %s", org_id, event_type, exc)
                break
    return Sent(None, None, org_id, event_type)
