"""Password hashing, and a check that costs the same whether or not the user exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.infra.offload import off_loop
from webapp.models import User

# A real hash of a random password, so that an unknown email costs as much as a wrong password.
_DUMMY_HASH = generate_password_hash("no-such-user-password")


def hash_password(password: str) -> str:
    """The stored form of `password` (salted, slow)."""
    return off_loop(generate_password_hash, password)


def verify_password(user: User | None, password: str) -> bool:
    """Constant-cost password check; False for a missing user."""
    if user is None:
        off_loop(check_password_hash, _DUMMY_HASH, password)
        return False
    return off_loop(check_password_hash, user.password_hash, password)


@dataclass(frozen=True)
class Attempt:
    """What a sign-in found: the users whose password it is, how many users it tried (those with the
    email, in `org_id` when given), and how many users have the email in any organization."""

    users: list[User]
    tried: int
    holders: int


def authenticate(
    session: Session,
    email: str,
    password: str,
    org_id: int | None = None,
    *,
    before_hashing: Callable[[int], None] | None = None,
) -> Attempt:
    """The users with this email whose password it is, in the organization `org_id` if given (emails
    are unique per organization only, so each user with the email is tried); an unknown email costs
    one hash like a known one. More than one: the caller must ask which organization.
    `before_hashing(n)` is told how many users are to be tried before any hash (it may refuse)."""
    query = select(User).where(func.lower(User.email) == email.strip().lower())
    holders = session.scalars(query.order_by(User.id)).all()
    users = [user for user in holders if org_id is None or user.org_id == org_id]
    if before_hashing is not None:
        before_hashing(len(users))
    if not users:
        verify_password(None, password)
        return Attempt([], 0, len(holders))
    return Attempt([user for user in users if verify_password(user, password)], len(users), len(holders))
