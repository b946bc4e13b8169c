"""Resume: the organization's events after the client's last id, in stream order, before live ones."""

from __future__ import annotations

from typing import Any

import redis

from webapp.api.ws import messages
from webapp.api.ws.messages import MessageError
from webapp.live.connection import Connection


def resume(conn: Connection, client: redis.Redis, last_id: Any) -> None:
    """Send the events after `last_id`, skipping those this socket sent already; MessageError says why not."""
    start = messages.event_id(last_id)
    try:
        conn.replay(client, start)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise MessageError("resume is unavailable while Redis is down; try again") from exc
