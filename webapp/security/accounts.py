"""Disabling and deleting users: their tokens are revoked with them, so admission (which checks
revocation on every request) refuses them from the next request on, at no cost to the others."""

from __future__ import annotations

import re
from datetime import datetime

import redis
from sqlalchemy.orm import Session

from webapp.models import User
from webapp.security import families

# What a new user's email and password must be, through the API and the CLI alike.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
EMAIL_MAX_LENGTH = 320
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024


def new_user_problem(email: str, password: str) -> str | None:
    """Why `email` and `password` cannot be a new user's (None when they can)."""
    if not re.fullmatch(EMAIL_PATTERN, email) or len(email) > EMAIL_MAX_LENGTH:
        return f"email {email!r} is not an email address (name@domain)"
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        return f"password must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters"
    return None


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
