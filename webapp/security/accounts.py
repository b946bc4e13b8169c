"""Disabling and deleting users: their tokens are revoked with them, so admission (which checks
revocation on every request) refuses them from the next request on, at no cost to the others."""

from __future__ import annotations

from datetime import datetime

import redis
from sqlalchemy.orm import Session

from webapp.models import User
from webapp.security import families


def disable_user(session: Session, client: redis.Redis, user: User, now: datetime) -> int:
    """Disable `user` (no login, no refresh) and revoke every token issued to them (committed); how
    many were revoked."""
    user.disabled_at = now
    session.flush()
    return families.revoke_user(session, client, user.id, now)


def enable_user(session: Session, user: User) -> None:
    """Let a disabled user log in again (their old tokens stay revoked)."""
    user.disabled_at = None
    session.commit()


def delete_user(session: Session, client: redis.Redis, user: User, now: datetime) -> int:
    """Revoke every token issued to `user`, then delete them (committed); how many were revoked."""
    revoked = families.revoke_user(session, client, user.id, now)
    session.delete(user)
    session.commit()
    return revoked
