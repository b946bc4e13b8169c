"""MONITOR of a real Redis: the commands it runs, whoever sends them, for tests that count round trips."""

from __future__ import annotations

import secrets
import time
from typing import Any

import redis


class Monitor:
    """The commands Redis runs while it watches (MONITOR), whoever sends them."""

    def __init__(self, url: str) -> None:
        self.url = url
        pool = redis.ConnectionPool.from_url(url, socket_timeout=5.0, driver_info=None, protocol=2)
        self.conn = pool.make_connection()
        self.conn.send_command("MONITOR")
        assert self.conn.read_response() == b"OK"

    def lines(self) -> list[str]:
        """What ran since the last call (up to a marker sent now, so nothing in flight is missed)."""
        marker = f"monitor-mark-{secrets.token_hex(4)}"
        redis.Redis.from_url(self.url).echo(marker)
        out: list[str] = []
        while True:
            line = self.conn.read_response()
            text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
            if marker in text:
                return out
            out.append(text)

    def close(self) -> None:
        self.conn.disconnect()


def lookups(lines: list[str], org_id: int | None = None) -> list[str]:
    """The commands among `lines` that read cached answers, generations or revocation marks; with
    `org_id`, those of that organization's answers and the revocation marks only (the test's worker
    may meanwhile refresh another organization's answers in the same Redis)."""
    found = [line for line in lines if '"EVALSHA"' in line or '"an:revoked:' in line or '"an:c:' in line]
    if org_id is None:
        return found
    own = (f'"an:c:{org_id}:', f'"an:gen:{org_id}:', '"an:revoked:')
    return [line for line in found if any(mark in line for mark in own)]


def warm(api: Any, path: str, monitor: Monitor, org_id: int | None = None) -> int:
    """Ask until an answer comes without a lookup in Redis (the near cache holds what it needs); how
    many requests that took (`org_id`: count that organization's lookups only, see lookups)."""
    monitor.lines()
    asked = []
    # For a few seconds: a near cache whose connection an earlier test broke is back a second later.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert api.get(path).status_code == 200
        asked.append(len(lookups(monitor.lines(), org_id)))
        if asked[-1] == 0:
            assert asked[0] > 0, "the first answer of a new organization must come from Redis"
            return len(asked)
        time.sleep(0.1)
    raise AssertionError(f"every answer needed a lookup in Redis: {asked}")
