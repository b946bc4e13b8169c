"""Sign-in throttling: too many failed logins for one email, or failed logins and refreshes from one
client address, within a sliding window answer 429 with Retry-After before any password is hashed.

Each email and address has a sorted set of its failures' times in Redis (`an:auth:fail:...`), trimmed
to the window at every check; the check and the trim are one round trip, as is recording a failure.
A throttled attempt records nothing, so a set never holds more than its limit. Without Redis the
throttle is open: it protects capacity and guesses, the password still decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import decode_token

from webapp.core.errors import ApiError
from webapp.infra.redis_client import get_redis

log = logging.getLogger(__name__)

PREFIX = "an:auth:fail:"
# Routes that exchange a refresh token: a 401 from one is a failure of its client address, and of the
# token's email when its signature holds. The API's takes it as the bearer token, the dashboard's
# session route from its cookie (and from nowhere else: another header must not hide the cookie's).
REFRESH_COOKIE = "dashboard_refresh"
API_REFRESH, WEB_REFRESH = "api.auth.refresh", "web_session.refresh"
REFRESH_ENDPOINTS = frozenset({API_REFRESH, WEB_REFRESH})
# The claim of a refresh token naming its login (token family): its failed refreshes' throttle.
FAMILY_CLAIM = "fam"


def email_digest(email: str) -> str:
    """What names one email's failures (hashed: keys name no address book)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def email_key(email: str) -> str:
    """The failures of one email."""
    return _email_key_of(email_digest(email))


def _email_key_of(digest: str) -> str:
    return PREFIX + "email:" + digest


def _refresh_key_of(family: str) -> str:
    """The failed refreshes of one login (its token family): a replayed dead token, from however many
    addresses, spends its own login's budget, never its email's sign-ins' nor the user's other
    sessions' (someone guessing the password, or holding a logged-out token, stops no live session
    from refreshing)."""
    return PREFIX + "refresh:" + family


def address_key(address: str | None) -> str:
    return PREFIX + "addr:" + (address or "unknown")


def _limits(config: Mapping[str, Any]) -> tuple[int, int, int]:
    return (
        config["AUTH_THROTTLE_WINDOW_SECONDS"],
        config["AUTH_MAX_FAILURES_PER_EMAIL"],
        config["AUTH_MAX_FAILURES_PER_ADDRESS"],
    )


def _wait(times: list[float], limit: int, window: int, now: float) -> int:
    """Seconds until fewer than `limit` of the failures `times` (ascending) lie in the window; 0 now."""
    if len(times) < limit:
        return 0
    return max(1, int(times[len(times) - limit] + window - now) + 1)


def check(keys: Mapping[str, int], what: str = "too many failed sign-ins") -> None:
    """429 with Retry-After while any of `keys` (key -> its limit) holds its limit of failures; the
    message starts with `what`."""
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, 0, now - window)
            pipe.zrange(key, 0, -1, withscores=True)
        replies = pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in throttle without Redis: %s", exc)
        return
    waits = [
        _wait([score for _, score in replies[2 * i + 1]], limit, window, now)
        for i, limit in enumerate(keys.values())
    ]
    wait = max(waits)
    if wait:
        raise ApiError(
            429,
            f"{what}; try again in {wait} s",
            code="too_many_failures",
            details={"retry_after": wait, "window_seconds": window},
            headers={"Retry-After": str(wait)},
        )


def record_failure(keys: list[str]) -> None:
    """Count one failure against each of `keys`."""
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key in keys:
            pipe.zadd(key, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
            pipe.expire(key, window + 1)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in failure not counted without Redis: %s", exc)


def login_keys(email: str) -> dict[str, int]:
    _, per_email, per_address = _limits(current_app.config)
    return {email_key(email): per_email, address_key(request.remote_addr): per_address}


def check_login(email: str) -> None:
    """Before the password is hashed: 429 while the email or the client address is throttled."""
    check(login_keys(email))


def login_failed(email: str) -> None:
    record_failure(list(login_keys(email)))


def _ambiguous_key(email: str) -> str:
    return PREFIX + "ambiguous:" + email_digest(email)


def check_ambiguous(email: str) -> None:
    """Before any hash: 429 while the email's sign-ins without org_id tried against several
    organizations' users reach AUTH_MAX_FAILURES_PER_EMAIL in the window; org_id still signs in."""
    check(
        {_ambiguous_key(email): current_app.config["AUTH_MAX_FAILURES_PER_EMAIL"]},
        "too many sign-ins without org_id for an email of several organizations; send org_id",
    )


def record_ambiguous(email: str) -> None:
    record_failure([_ambiguous_key(email)])


def login_succeeded(email: str) -> None:
    """A right password clears its email's failures (the address keeps its own). Only for an email
    of one user: where other organizations' users have it too they keep their guard, or a user of one
    organization could clear the failures of guesses at another's with their own password."""
    with contextlib.suppress(redis.RedisError):
        get_redis().delete(email_key(email))


def _refresh_login_key() -> str | None:
    """The login throttle named by the refresh token the request presents, when its signature and
    expiry hold (a forged or expired token names none: only its address counts)."""
    if request.endpoint == WEB_REFRESH:
        token = request.cookies.get(REFRESH_COOKIE)
    else:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
    if not token:
        return None
    try:
        claims = decode_token(token, allow_expired=False)
    except Exception:  # any undecodable token: the address alone counts it
        return None
    family = claims.get(FAMILY_CLAIM) if claims.get("type") == "refresh" else None
    return _refresh_key_of(family) if isinstance(family, str) and family.isalnum() else None


def _refresh_keys(app: Flask) -> dict[str, int]:
    """The throttles of this refresh request (decoded once, checked before and counted after)."""
    if "refresh_throttles" not in g:
        keys = {address_key(request.remote_addr): app.config["AUTH_MAX_FAILURES_PER_ADDRESS"]}
        login = _refresh_login_key()
        if login is not None:
            keys[login] = app.config["AUTH_MAX_FAILURES_PER_EMAIL"]
        g.refresh_throttles = keys
    return g.refresh_throttles


def init_app(app: Flask) -> None:
    """Refresh routes: checked by client address and by the token's login before the token is used,
    a 401 counted against both after (a refresh token used up, revoked, or of a disabled user)."""

    @app.before_request
    def check_refresh() -> None:
        if request.endpoint in REFRESH_ENDPOINTS:
            check(_refresh_keys(app))

    @app.after_request
    def count_refresh_failure(response: Response) -> Response:
        if request.endpoint in REFRESH_ENDPOINTS and response.status_code == 401:
            record_failure(list(_refresh_keys(app)))
        return response
