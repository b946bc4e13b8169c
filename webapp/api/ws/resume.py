"""Resume: the organization's events after the client's last id, in stream order, before live ones."""

from __future__ import annotations

import time
from typing import Any

import redis

from webapp.api.ws import messages
from webapp.api.ws.messages import MessageError
from webapp.live import events
from webapp.live.connection import Connection, id_order


def resume(conn: Connection, client: redis.Redis, last_id: Any, *, max_seconds: int) -> None:
    """Send the events after `last_id`, skipping those this socket sent already, reaching back at most
    `max_seconds` (an error says so first when `last_id` is older); MessageError says why not."""
    start = messages.event_id(last_id)
    floor = f"{max(0, int((time.time() - max_seconds) * 1000))}-0"
    try:
        if id_order(start) < id_order(floor) and _missed_before(client, conn.org_id, start, floor):
            messages.send_error(
                conn,
                f"resume reaches back at most {max_seconds} s (WS_RESUME_MAX_SECONDS): events before "
                f"{floor} are not sent again; fetch the current state over REST",
            )
            start = floor
        conn.replay(client, start)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise MessageError("resume is unavailable while Redis is down; try again") from exc


def _missed_before(client: redis.Redis, org_id: int, start: str, floor: str) -> bool:
    """Whether events after `start` would go unsent by replaying from `floor`: some held before it, or
    some the stream's length cap dropped (it holds STREAM_MAXLEN once trimmed, and its oldest entry
    is then past `start`). An id older than the window with nothing after it until the window (an
    organization quiet for an hour, an empty stream's 0-0) loses nothing."""
    key = events.stream_key(org_id)
    if client.xrange(key, min=f"({start}", max=floor, count=1):
        return True
    if client.xlen(key) < events.STREAM_MAXLEN:
        return False
    oldest = client.xrange(key, count=1)
    return bool(oldest) and id_order(_text(oldest[0][0])) > id_order(start)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
