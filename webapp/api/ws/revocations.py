"""Logout ends a user's sockets: the tokens of every open socket of the process, asked about together.

A revocation is announced on a Redis channel once it is durable (security.revocation.CHANNEL): one
thread (a greenlet under gevent) listens on a connection of its own, and halts the sockets of each
token it names as the announcement arrives (nothing more is sent to them) and wakes them to close
with 1008. Announcements are not kept: a process that was not
listening (Redis away, a restart) finds the revocation at its periodic check, where every
REVOCATION_CHECK_SECONDS another thread asks whether any token held by an open socket was revoked, in
one Redis round trip for up to a thousand tokens (and one database query for those Redis has no
answer for). Ten thousand sockets thus cost two round trips every few seconds instead of two thousand
a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.client import PubSub
from sqlalchemy.orm import Session, sessionmaker

from webapp.security import revocation

log = logging.getLogger(__name__)

# How often open sockets' tokens are checked: a logout unheard on the channel closes them within this long.
REVOCATION_CHECK_SECONDS = 5.0
# How long the listener waits for an announcement before it looks again (and how long it waits
# before it subscribes again after Redis went away).
LISTEN_SECONDS = 1.0
# How often the listener pings its subscription, which must answer within two pings.
PING_SECONDS = 15.0


@dataclass(eq=False)
class Watched:
    """One open socket's token, and how to wake the socket once it is found revoked."""

    jti: str
    expires_at: float
    wake: Callable[[], None]
    revoked: bool = False


class RevocationWatch:
    """The tokens of the process's open sockets, checked together every REVOCATION_CHECK_SECONDS."""

    def __init__(
        self,
        client: redis.Redis,
        sessions: sessionmaker[Session],
        negative_ttl: int,
        listen_client: redis.Redis | None = None,
    ) -> None:
        """`listen_client`: a client of the watch's own for the announcements' subscription (which
        holds a connection for good), else `client`'s pool lends it one."""
        self.pid = os.getpid()
        self.client = client
        self.listen_client = listen_client or client
        self.sessions = sessions
        self.negative_ttl = negative_ttl
        self.watched: dict[str, set[Watched]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.listener: threading.Thread | None = None

    def add(self, watched: Watched) -> None:
        with self.lock:
            self.watched.setdefault(watched.jti, set()).add(watched)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="socket-revocations", daemon=True)
                self.thread.start()
            if self.listener is None or not self.listener.is_alive():
                self.listener = threading.Thread(
                    target=self._listen, name="socket-revocation-news", daemon=True
                )
                self.listener.start()

    def remove(self, watched: Watched) -> None:
        with self.lock:
            group = self.watched.get(watched.jti)
            if group is not None:
                group.discard(watched)
                if not group:
                    del self.watched[watched.jti]

    def _run(self) -> None:
        while True:
            time.sleep(REVOCATION_CHECK_SECONDS)
            try:
                self.check()
            except Exception:
                # Redis and the database both unreachable: keep the sockets (their tokens still
                # expire) and ask again at the next check rather than drop every socket in an outage.
                log.warning("cannot check token revocation for open sockets", exc_info=True)

    def _listen(self) -> None:
        deaf_since: float | None = None
        while True:
            try:
                # Subscribe messages are seen (the confirmation is waited for); only "message" acts.
                pubsub = self.listen_client.pubsub()
                try:
                    _subscribed(pubsub)
                    # Whatever was announced while nobody here listened is found now, not at the
                    # next periodic check (which still covers it if this one cannot ask).
                    with contextlib.suppress(Exception):
                        self.check()
                    if deaf_since is not None:
                        log.warning(
                            "revocation announcements heard again after %.0f s", time.monotonic() - deaf_since
                        )
                        deaf_since = None
                    self._heard(pubsub)
                finally:
                    pubsub.close()
            except Exception as exc:
                # Redis away (or refusing SUBSCRIBE): the periodic check covers what is announced
                # meanwhile. Said once an outage, at its start.
                if deaf_since is None:
                    deaf_since = time.monotonic()
                    log.warning(
                        "revocation announcements unheard (%s); open sockets are checked every %g s",
                        exc,
                        REVOCATION_CHECK_SECONDS,
                    )
                time.sleep(LISTEN_SECONDS)

    def _heard(self, pubsub: PubSub) -> None:
        """Act on each announcement until the subscription breaks or stops answering: a ping every
        PING_SECONDS must be answered (a connection left half-open by a failover raises nothing)."""
        heard = pinged = time.monotonic()
        while True:
            message = pubsub.get_message(timeout=LISTEN_SECONDS)
            now = time.monotonic()
            if message is not None:
                heard = now
                if message.get("type") == "message":
                    self.revoked(_jtis(message["data"]))
            if now - pinged >= PING_SECONDS:
                pubsub.ping()
                pinged = now
            if now - heard > 2 * PING_SECONDS + LISTEN_SECONDS:
                raise redis.ConnectionError(f"no answer from Redis for {now - heard:.0f} s")

    def revoked(self, jtis: Iterable[str]) -> int:
        """Wake the sockets of the tokens `jtis` as revoked; how many sockets."""
        with self.lock:
            targets = [w for jti in jtis for w in self.watched.get(jti, ())]
        for watched in targets:
            watched.revoked = True
            watched.wake()
        return len(targets)

    def check(self) -> int:
        """Ask about every watched token now; wake the sockets of those revoked. How many were."""
        with self.lock:
            tokens = {
                jti: datetime.fromtimestamp(next(iter(group)).expires_at, UTC)
                for jti, group in self.watched.items()
            }
        if not tokens:
            return 0
        revoked = revocation.revoked_among(self.client, self.sessions, tokens, negative_ttl=self.negative_ttl)
        self.revoked(revoked)
        return len(revoked)


def _jtis(data: bytes | str) -> list[str]:
    return (data.decode() if isinstance(data, bytes) else data).split()


def _subscribed(pubsub: PubSub) -> None:
    """Subscribe to the announcements and wait for Redis's confirmation (a refusal, an ACL's NOPERM,
    comes back only as the reply, raised here), so that what follows runs with the subscription in
    force."""
    pubsub.subscribe(revocation.CHANNEL)
    deadline = time.monotonic() + PING_SECONDS
    while True:
        message = pubsub.get_message(timeout=LISTEN_SECONDS)
        if message is not None and message.get("type") == "subscribe":
            return
        if time.monotonic() > deadline:
            raise redis.ConnectionError("Redis did not confirm the subscription")
