"""Email and password to the one user they sign in, for the API's login and the dashboard's sign-in."""

from __future__ import annotations

from webapp.api.plumbing.errors import ApiError
from webapp.api.schemas.common import LoginRequest
from webapp.infra.db import get_session
from webapp.models import User
from webapp.security import throttle
from webapp.security.passwords import authenticate


def signed_in_user(data: LoginRequest) -> User:
    """The user `data` signs in, or 401 (wrong, disabled), 429 (throttled) or 409: users of several
    organizations have the email and the password, and `org_id` does not say which."""
    # Before the password is hashed; in flight (counted against the budgets) until settled.
    attempt = throttle.admit_login(data.email)

    def across_organizations(tried: int) -> None:
        # Tried against several organizations' users, the answer (one user, or 409 naming several)
        # tells whether the password is another organization's user's too: such sign-ins have a
        # budget of their own per email (as many as its failures), so it is no faster an oracle than
        # guessing; past it, org_id still signs in (one user tried).
        if tried > 1:
            throttle.admit_ambiguous(data.email)

    try:
        checked = authenticate(
            get_session(), data.email, data.password, data.org_id, before_hashing=across_organizations
        )
    except BaseException:  # throttled before any hash (across_organizations), or an error: no guess
        throttle.settle(attempt, failed=False)
        raise
    users = checked.users
    throttle.settle(attempt, failed=not users)
    if not users:
        raise ApiError(401, "wrong email or password")
    if len(users) > 1:
        # A disabled account signs in nowhere: it does not make the login ambiguous.
        users = [user for user in users if user.disabled_at is None] or users[:1]
    if len(users) > 1:
        # Whoever sent the password may sign in to each; which one is theirs to say.
        raise ApiError(
            409,
            "users of several organizations have this email and password; send org_id to choose one",
            code="organization_ambiguous",
            details={"field": "org_id", "org_ids": sorted(user.org_id for user in users)},
        )
    user = users[0]
    if user.disabled_at is not None:
        raise ApiError(401, "this user is disabled")
    if checked.holders == 1:
        throttle.login_succeeded(data.email)
    throttle.remember_sign_in(data.email)
    return user
