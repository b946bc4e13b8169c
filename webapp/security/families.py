"""Token families: every token a login issues, and every token a refresh issues after it, belong to
that login's family. A refresh token is used once: the refresh that uses it issues its successor; a
used one presented again (after a short grace for a client's concurrent retries) means it was copied,
and every token of the family is revoked. A logout revokes its family; a deleted or disabled user's
tokens are all revoked. Revocation itself is `revocation`'s: the per-request check stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import redis
from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from webapp.models import IssuedToken
from webapp.security import revocation


class RefreshRefused(Exception):
    """The refresh token cannot be used: unknown here, or used before (its family is then revoked)."""


def record(
    session: Session, *, jti: str, user_id: int, family: str | None, type: str, expires_at: datetime
) -> None:
    """Keep a token just issued (written when the caller commits)."""
    session.add(IssuedToken(jti=jti, user_id=user_id, family=family, type=type, expires_at=expires_at))


def use_refresh(
    session: Session, client: redis.Redis, *, jti: str, user_id: int, now: datetime, grace_seconds: int
) -> str:
    """Mark refresh token `jti` used and return its family (the caller issues its successor and commits).

    RefreshRefused when the token was not issued here to `user_id`, or was used more than
    `grace_seconds` ago: then the whole family is revoked (committed) before raising.
    """
    row = session.scalar(select(IssuedToken).where(IssuedToken.jti == jti).with_for_update())
    if row is None or row.type != "refresh" or row.user_id != user_id or row.family is None:
        raise RefreshRefused("the refresh token is not known here; log in again")
    if row.used_at is not None and now - row.used_at > timedelta(seconds=grace_seconds):
        revoke_family(session, client, row.family, now)
        raise RefreshRefused(
            "the refresh token was already used, so it was copied: every token of its login is revoked; "
            "log in again"
        )
    row.used_at = row.used_at or now
    return row.family


def revoke_family(session: Session, client: redis.Redis, family: str, now: datetime) -> int:
    """Revoke every unexpired token of the family (committed); how many."""
    return _revoke(
        session,
        client,
        select(IssuedToken.jti, IssuedToken.expires_at).where(
            IssuedToken.family == family, IssuedToken.expires_at > now
        ),
    )


def revoke_user(session: Session, client: redis.Redis, user_id: int, now: datetime) -> int:
    """Revoke every unexpired token issued to the user (committed); how many."""
    return _revoke(
        session,
        client,
        select(IssuedToken.jti, IssuedToken.expires_at).where(
            IssuedToken.user_id == user_id, IssuedToken.expires_at > now
        ),
    )


def _revoke(session: Session, client: redis.Redis, query: Select[tuple[str, datetime]]) -> int:
    tokens: Sequence[tuple[str, datetime]] = [(jti, expires_at) for jti, expires_at in session.execute(query)]
    revocation.revoke_many(session, client, tokens)
    return len(tokens)


def delete_expired(session: Session, now: datetime) -> int:
    """Forget the tokens that have expired (refused as expired anyway); how many."""
    deleted = session.execute(delete(IssuedToken).where(IssuedToken.expires_at <= now))
    session.commit()
    return deleted.rowcount or 0
