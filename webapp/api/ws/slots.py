"""Open sockets: at most WS_MAX_SOCKETS_PER_PROCESS in this web process, and at most
WS_MAX_SOCKETS_PER_ORG of one organization across every web process; past a cap, refused before the
upgrade (503 / 429).

The process cap is counted here. The organization's is counted in Redis, one hash per organization
holding each process's sockets of it: a Lua script adds one only while the total of the processes
seen alive stays under the cap. Every process writes its exact counts and that it is alive every
SYNC_SECONDS, so a process that died stops counting within STALE_SECONDS and a decrement lost to a
Redis outage is corrected at the next sync. While Redis cannot answer, sockets are admitted (the cap
protects capacity; access is the token's business).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import redis

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0
STALE_SECONDS = 3 * SYNC_SECONDS
ALIVE = "an:ws:processes"  # sorted set: process -> when it last synced

_TAKE = """
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local seen = redis.call('ZSCORE', KEYS[2], counts[i])
  if counts[i] == ARGV[1] or (seen and tonumber(seen) >= tonumber(ARGV[4])) then
    total = total + tonumber(counts[i + 1])
  else
    redis.call('HDEL', KEYS[1], counts[i])
  end
end
if total >= tonumber(ARGV[2]) then
  return -1
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""

_GIVE_BACK = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""


def org_key(org_id: int) -> str:
    """The hash of the organization's open sockets per process."""
    return f"an:ws:open:{org_id}"


class Slots:
    """This process's open sockets, in all and per organization, and its share of each
    organization's count in Redis."""

    def __init__(self, process: str | None = None) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._per_org: dict[int, int] = {}
        self._named = process
        self._pid = os.getpid()
        # Organizations whose count this process has written to Redis (a zero is deleted at sync).
        self._written: set[int] = set()
        self._client: redis.Redis | None = None
        self._thread: threading.Thread | None = None

    @property
    def process(self) -> str:
        """This process's name in the counts: host and pid (a forked child gets its own)."""
        return self._named or f"{socket.gethostname()}:{os.getpid()}"

    def take(self, client: redis.Redis, org_id: int, max_total: int, max_org: int) -> tuple[int, str] | None:
        """None when a slot was taken; else the status and message that refuse the socket."""
        with self._lock:
            if self._pid != os.getpid():
                self._forked()
            if self._total >= max_total:
                return 503, "this server holds as many sockets as it can; try again shortly"
            self._total += 1
            self._per_org[org_id] = self._per_org.get(org_id, 0) + 1
            self._client = client
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="socket-counts", daemon=True)
                self._thread.start()
        now = time.time()
        try:
            counted = client.eval(
                _TAKE, 2, org_key(org_id), ALIVE, self.process, max_org, now, now - STALE_SECONDS
            )
        except redis.RedisError as exc:
            log.warning("socket admitted uncounted (Redis unavailable) org=%s: %s", org_id, exc)
            return None
        if counted == -1:
            self._release(org_id)
            return 429, f"the organization has {max_org} sockets open; close one first"
        with self._lock:
            self._written.add(org_id)
        return None

    def give_back(self, client: redis.Redis, org_id: int) -> None:
        """Free the slot a closed socket of `org_id` held (Redis's count too, or at the next sync)."""
        self._release(org_id)
        with contextlib.suppress(redis.RedisError):  # the next sync writes the exact count
            client.eval(_GIVE_BACK, 1, org_key(org_id), self.process)

    def open_sockets(self, org_id: int | None = None) -> int:
        """This process's open sockets, in all or of one organization."""
        with self._lock:
            return self._total if org_id is None else self._per_org.get(org_id, 0)

    def sync(self) -> None:
        """Write that this process is alive and its exact count of every organization's sockets."""
        with self._lock:
            client = self._client
            counts = dict(self._per_org)
            gone = self._written - set(counts)
            self._written = set(counts)
        if client is None:
            return
        pipe = client.pipeline(transaction=False)
        pipe.zadd(ALIVE, {self.process: time.time()})
        pipe.zremrangebyscore(ALIVE, "-inf", time.time() - 10 * STALE_SECONDS)
        for org_id, count in counts.items():
            pipe.hset(org_key(org_id), self.process, count)
        for org_id in gone:
            pipe.hdel(org_key(org_id), self.process)
        pipe.execute()

    def _release(self, org_id: int) -> None:
        with self._lock:
            self._total -= 1
            left = self._per_org.get(org_id, 1) - 1
            if left:
                self._per_org[org_id] = left
            else:
                self._per_org.pop(org_id, None)

    def _forked(self) -> None:
        """A forked child holds none of its parent's sockets."""
        self._pid = os.getpid()
        self._total, self._per_org, self._written = 0, {}, set()
        self._thread = None

    def _run(self) -> None:
        while True:
            time.sleep(SYNC_SECONDS)
            try:
                self.sync()
            except redis.RedisError as exc:
                log.warning("socket counts not written (Redis unavailable): %s", exc)
            except Exception:
                log.exception("socket counts not written")


# The process's slots: every socket of this web process takes one.
SLOTS = Slots()
