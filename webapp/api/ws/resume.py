"""Resume: the organization's events after the client's last id, in stream order, before live ones."""

from __future__ import annotations

import time
from typing import Any

import redis

from webapp.api.ws import messages
from webapp.api.ws.messages import MessageError
from webapp.live.connection import Connection, id_order


def resume(conn: Connection, client: redis.Redis, last_id: Any, *, max_seconds: int) -> None:
    """Send the events after `last_id`, skipping those this socket sent already, reaching back at most
    `max_seconds` (an error says so first when `last_id` is older); MessageError says why not."""
    start = messages.event_id(last_id)
    floor = f"{max(0, int((time.time() - max_seconds) * 1000))}-0"
    if id_order(start) < id_order(floor):
        messages.send_error(
            conn,
            f"resume reaches back at most {max_seconds} s (WS_RESUME_MAX_SECONDS): events before "
            f"{floor} are not sent again; fetch the current state over REST",
        )
        start = floor
    try:
        conn.replay(client, start)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise MessageError("resume is unavailable while Redis is down; try again") from exc
