"""The token blocklist: Redis answers first, PostgreSQL is the durable record.

A revocation is written to both. A check asks Redis; where Redis has no answer (the key was
flushed or evicted, or Redis is down) it asks the database and writes the answer back to Redis:
"revoked" until the token's expiry, "not revoked" for a few seconds only, so a logout made while
Redis was unreachable is enforced from the database at once; the process that made it writes it
to Redis as soon as it reaches Redis again, and every process sees it within that time at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import redis
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from webapp.core.timeutil import utcnow
from webapp.models import RevokedToken

log = logging.getLogger(__name__)

REVOKED = b"1"
NOT_REVOKED = b"0"
DEFAULT_NEGATIVE_TTL = 10

# Revocations this process could not write to Redis: written there at its next successful contact.
_pending: dict[str, datetime] = {}
_pending_lock = threading.Lock()


PREFIX = "an:revoked:"
# Revocations are announced here (the revoked ids, space-separated) once they are durable: every web
# process's watch over its open sockets listens, and ends the sockets of those tokens at once.
CHANNEL = "an:revocations"


def key(jti: str) -> str:
    return f"{PREFIX}{jti}"


def _seconds_left(expires_at: datetime) -> int:
    return int(expires_at.timestamp() - time.time()) + 1


def revoke(session: Session, client: redis.Redis, *, jti: str, expires_at: datetime) -> None:
    """Record `jti` as revoked until `expires_at`, in Redis (when reachable) and in the database.

    A database failure propagates (the logout did not happen durably); a Redis failure does not.
    """
    revoke_many(session, client, [(jti, expires_at)])


def revoke_many(session: Session, client: redis.Redis, tokens: Sequence[tuple[str, datetime]]) -> None:
    """Record each (jti, expires_at) as revoked, as revoke() does for one, in one round trip and one
    commit."""
    live = [(jti, expires_at) for jti, expires_at in tokens if _seconds_left(expires_at) > 0]
    if not live:
        session.commit()
        return  # already expired: refused as such
    try:
        # Plain SETs: they must overwrite a cached "not revoked" answer.
        pipe = client.pipeline(transaction=False)
        for jti, expires_at in live:
            pipe.set(key(jti), REVOKED, ex=_seconds_left(expires_at))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("%s tokens revoked in the database only (Redis unreachable): %s", len(live), exc)
        with _pending_lock:
            _pending.update(live)
    session.execute(
        insert(RevokedToken)
        .values([{"jti": jti, "expires_at": expires_at} for jti, expires_at in live])
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
    )
    session.commit()
    _announce(client, [jti for jti, _ in live])


def _announce(client: redis.Redis, jtis: Sequence[str]) -> None:
    """Tell the open sockets' watches (CHANNEL); unheard (Redis away), their periodic check finds them."""
    try:
        client.publish(CHANNEL, " ".join(jtis))
    except redis.RedisError as exc:
        log.warning("revocations not announced to open sockets (Redis unreachable): %s", exc)


def is_revoked(
    client: redis.Redis,
    make_session: sessionmaker[Session],
    *,
    jti: str,
    expires_at: datetime,
    negative_ttl: int = DEFAULT_NEGATIVE_TTL,
) -> bool:
    """Whether `jti` was revoked: Redis first, then the database (which raises when it is down too)."""
    try:
        flush_pending(client)
        cached = client.get(key(jti))
    except redis.RedisError:
        return answer(None, None, make_session, jti=jti, expires_at=expires_at, negative_ttl=negative_ttl)
    return answer(cached, client, make_session, jti=jti, expires_at=expires_at, negative_ttl=negative_ttl)


def answer(
    cached: bytes | None,
    client: redis.Redis | None,
    make_session: sessionmaker[Session],
    *,
    jti: str,
    expires_at: datetime,
    negative_ttl: int = DEFAULT_NEGATIVE_TTL,
) -> bool:
    """Whether `jti` was revoked, given `cached`, what Redis holds at key(jti).

    Where Redis held nothing the database answers, and the answer is written back to Redis through
    `client` (None: Redis is unreachable, nothing is written).
    """
    if cached is not None:
        return cached == REVOKED
    with make_session() as session:
        revoked = (
            session.scalar(
                select(RevokedToken.jti).where(RevokedToken.jti == jti, RevokedToken.expires_at > utcnow())
            )
            is not None
        )
    if client is not None:
        try:
            if revoked:
                client.set(key(jti), REVOKED, ex=max(1, _seconds_left(expires_at)))
            else:
                # NX: never overwrite a revocation written since the database was read.
                client.set(key(jti), NOT_REVOKED, ex=negative_ttl, nx=True)
        except redis.RedisError:
            pass
    return revoked


# Tokens asked about in one MGET (and one database query for those Redis holds no answer for).
BATCH = 1000


def revoked_among(
    client: redis.Redis,
    make_session: sessionmaker[Session],
    tokens: Mapping[str, datetime],
    *,
    negative_ttl: int = DEFAULT_NEGATIVE_TTL,
) -> set[str]:
    """Which of `tokens` (jti -> expiry) were revoked, as `is_revoked` answers for each, in a round
    trip and at most one query per BATCH tokens; raises when the database is needed and down."""
    revoked: set[str] = set()
    jtis = list(tokens)
    for start in range(0, len(jtis), BATCH):
        revoked |= _revoked_batch(client, make_session, jtis[start : start + BATCH], tokens, negative_ttl)
    return revoked


def _revoked_batch(
    client: redis.Redis,
    make_session: sessionmaker[Session],
    jtis: list[str],
    tokens: Mapping[str, datetime],
    negative_ttl: int,
) -> set[str]:
    reachable: redis.Redis | None = client
    try:
        flush_pending(client)
        cached = client.mget([key(jti) for jti in jtis])
    except redis.RedisError:
        cached, reachable = [None] * len(jtis), None
    revoked = {jti for jti, value in zip(jtis, cached, strict=True) if value == REVOKED}
    unknown = [jti for jti, value in zip(jtis, cached, strict=True) if value is None]
    if not unknown:
        return revoked
    with make_session() as session:
        found = set(
            session.scalars(
                select(RevokedToken.jti).where(
                    RevokedToken.jti.in_(unknown), RevokedToken.expires_at > utcnow()
                )
            )
        )
    if reachable is not None:
        try:
            pipe = reachable.pipeline(transaction=False)
            for jti in unknown:
                if jti in found:
                    pipe.set(key(jti), REVOKED, ex=max(1, _seconds_left(tokens[jti])))
                else:
                    # NX: never overwrite a revocation written since the database was read.
                    pipe.set(key(jti), NOT_REVOKED, ex=negative_ttl, nx=True)
            pipe.execute()
        except redis.RedisError:
            pass
    return revoked | found


def nothing_pending() -> bool:
    """Whether every revocation this process made is in Redis."""
    return not _pending


def flush_pending(client: redis.Redis) -> None:
    """Write to Redis the revocations this process made while Redis was unreachable (raises RedisError)."""
    if _pending:
        _write_pending(client)


def _write_pending(client: redis.Redis) -> None:
    with _pending_lock:
        pending = dict(_pending)
    pipe = client.pipeline(transaction=False)
    for jti, expires_at in pending.items():
        ttl = _seconds_left(expires_at)
        if ttl > 0:
            pipe.set(key(jti), REVOKED, ex=ttl)
    pipe.execute()
    with _pending_lock:
        for jti in pending:
            _pending.pop(jti, None)
    log.info("wrote %s revocations made during the Redis outage to Redis", len(pending))


def delete_expired(session: Session, now: datetime | None = None) -> int:
    """Delete the rows of tokens that have expired (refused as expired anyway); how many."""
    moment = now or utcnow()
    deleted = session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= moment))
    session.commit()
    return deleted.rowcount or 0
