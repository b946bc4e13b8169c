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
from flask import Flask, Response, current_app, request

from webapp.core.errors import ApiError
from webapp.infra.redis_client import get_redis

log = logging.getLogger(__name__)

PREFIX = "an:auth:fail:"
# Routes that exchange a refresh token: a 401 from one is a failure of its client address.
REFRESH_ENDPOINTS = frozenset({"api.auth.refresh", "web_session.refresh"})


def email_key(email: str) -> str:
    """The failures of one email (hashed: keys name no address book)."""
    return PREFIX + "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


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


def check(keys: Mapping[str, int]) -> None:
    """429 with Retry-After while any of `keys` (key -> its limit) holds its limit of failures."""
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
            f"too many failed sign-ins; try again in {wait} s",
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


def login_succeeded(email: str) -> None:
    """A right password clears its email's failures (the address keeps its own)."""
    with contextlib.suppress(redis.RedisError):
        get_redis().delete(email_key(email))


def init_app(app: Flask) -> None:
    """Refresh routes: checked by client address before their token is read, a 401 counted after."""

    @app.before_request
    def check_refresh() -> None:
        if request.endpoint in REFRESH_ENDPOINTS:
            check({address_key(request.remote_addr): app.config["AUTH_MAX_FAILURES_PER_ADDRESS"]})

    @app.after_request
    def count_refresh_failure(response: Response) -> Response:
        if request.endpoint in REFRESH_ENDPOINTS and response.status_code == 401:
            record_failure([address_key(request.remote_addr)])
        return response
