"""Token families: every token a login issues, and every token a refresh issues after it, belong to
that login's family. A refresh token is used once: the refresh that uses it issues its successor,
whose jti is derived from its own, so a token has one successor at most (the table's primary key
holds it). Presented again within a short grace (a client's concurrent or retried refresh), it is
answered with that same successor; later, it was copied, and every token of the family is revoked.
A logout revokes its family; a deleted or disabled user's tokens are all revoked. Revocation itself
is `revocation`'s: the per-request check stays as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from webapp.models import IssuedToken
from webapp.security import revocation

# The namespace of successor jtis (uuid5 of the used token's jti): any fixed value would do.
SUCCESSOR_NAMESPACE = uuid.UUID("6f1d7c3e-2b8a-5e4f-9a61-0c5d3b7e8f20")


class RefreshRefused(Exception):
    """The refresh token cannot be used: unknown here, or used before (its family is then revoked)."""


@dataclass(frozen=True)
class RefreshUse:
    """A refresh token accepted: its family, and the jti of its successor. `successor` is the
    successor's record when an earlier use within the grace issued it already (to be answered again),
    None when this use issues it."""

    family: str
    successor_jti: str
    successor: IssuedToken | None


def successor_jti(jti: str) -> str:
    """The jti of the refresh token that using refresh token `jti` issues.

    Derived, not drawn: a retry within the grace finds the successor the first use issued (and is
    answered with it), and no refresh token can ever have two successors, so a replayed token can
    never start a second chain of its login. A jti is no secret (it is in the token, in clear)."""
    return str(uuid.uuid5(SUCCESSOR_NAMESPACE, jti))


def record(
    session: Session, *, jti: str, user_id: int, family: str | None, type: str, expires_at: datetime
) -> None:
    """Keep a token just issued (written when the caller commits)."""
    session.add(IssuedToken(jti=jti, user_id=user_id, family=family, type=type, expires_at=expires_at))


def use_refresh(
    session: Session, client: redis.Redis, *, jti: str, user_id: int, now: datetime, grace_seconds: int
) -> RefreshUse:
    """Mark refresh token `jti` used; its family and successor (the caller issues or re-signs the
    successor and commits).

    RefreshRefused when the token was not issued here to `user_id`, or was used more than
    `grace_seconds` ago: then the whole family is revoked (committed) before raising. The row is
    locked, so concurrent uses take turns and the later ones see the successor the first recorded.
    """
    row = session.scalar(
        select(IssuedToken)
        .where(IssuedToken.jti == jti)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.type != "refresh" or row.user_id != user_id or row.family is None:
        raise RefreshRefused("the refresh token is not known here; log in again")
    if row.used_at is not None and now - row.used_at > timedelta(seconds=grace_seconds):
        revoke_family(session, client, row.family, now)
        raise RefreshRefused(
            "the refresh token was already used, so it was copied: every token of its login is revoked; "
            "log in again"
        )
    successor = successor_jti(jti)
    if row.used_at is None:
        row.used_at = now
        return RefreshUse(family=row.family, successor_jti=successor, successor=None)
    issued = session.get(IssuedToken, successor)
    if issued is None or issued.family != row.family or issued.used_at is not None:
        # Used before successors were derived, the successor gone, or used itself already (answered
        # again, it would be a used token whose next use revokes the login): nothing to answer again.
        raise RefreshRefused("the refresh token was already used; log in again")
    return RefreshUse(family=row.family, successor_jti=successor, successor=issued)


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
