"""Admitting a request before its view runs: a verified token, not revoked, with the role, within budget.

A token this process verified before needs no second signature check. What is left needs Redis: the
token's revocation mark and the organization's request budget. This process may know both already:
a copy of the mark in its near cache (on routes that change nothing) and a block of budget it holds
(ratelimit.Leases); then the request makes no round trip at all. Otherwise one round trip asks Redis
for what is missing. Either way every check is settled before the view, so a refused token never
reaches a view, and no other package takes part in the decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import jwt as pyjwt
import redis
from flask import Flask, current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException

from webapp.core.errors import ApiError
from webapp.infra.db import session_factory
from webapp.infra.near_cache import MISSING, NearView
from webapp.infra.redis_client import Command, copy_near, get_redis, near_view, round_trip
from webapp.security import ratelimit, revocation
from webapp.security.tokens import ROLE_RANK, UNAUTHORIZED_HEADERS, negative_ttl, verified_tokens

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who the request is from: the token's user, organization and role."""

    user_id: int
    org_id: int
    role: str


def init_app(app: Flask) -> None:
    """The process's budget blocks, and revocation marks among the keys its near cache copies."""
    app.extensions["budget_leases"] = ratelimit.Leases()
    copy_near(app, (revocation.PREFIX,))


def require_role(
    minimum: str = "viewer", *, refresh: bool = False, read_only: bool = False
) -> Callable[[F], F]:
    """Admit the request only with a valid bearer token of role `minimum` or higher, and budget left.

    Sets g.principal and g.claims. `refresh` routes take a refresh token instead. On a `read_only`
    route (it changes nothing) a revocation mark copied in the near cache is trusted; elsewhere Redis
    (or the database) is always asked.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            claims = _admit(minimum, refresh=refresh, read_only=read_only)
            g.principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
            g.claims = claims
            return view(*args, **kwargs)

        # The OpenAPI document names the role each operation needs (plumbing.openapi reads it).
        wrapper.__required_role__ = "refresh" if refresh else minimum  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def is_admin() -> bool:
    """Whether the request carries a valid, unrevoked admin token; a missing, invalid or lesser one is
    False, never an error (for routes open to anyone that tell an admin more)."""
    if request.headers.get("Authorization") is None:
        return False
    try:
        _admit("admin", refresh=False, read_only=True)
    except Exception:  # any refusal: 401, 403, a token the JWT library cannot read
        return False
    return True


def presented_principal() -> Principal | None:
    """The principal of the request's bearer token when it sends a valid one (admitted as
    require_role("viewer", read_only=True) admits it), else None: for routes whose own credential
    is a signed link, where a token may still be sent. A token that is not valid (expired, revoked,
    garbage) is as if not sent: a client that attaches its token to every request keeps the link's
    24 hours when its hour-long token has run out."""
    if "Authorization" not in request.headers:
        return None
    try:
        claims = _admit("viewer", refresh=False, read_only=True)
    except (pyjwt.InvalidTokenError, JWTExtendedException):
        return None
    except ApiError as exc:
        if exc.status == 401:
            return None
        raise
    g.principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
    g.claims = claims
    return g.principal


def current_claims() -> dict[str, Any]:
    """The verified claims of the request's bearer token."""
    return g.claims


def current_principal() -> Principal:
    """The request's principal (set by require_role)."""
    return g.principal


def _admit(minimum: str, *, refresh: bool, read_only: bool) -> dict[str, Any]:
    """The claims of the request's token once every check passed; raises the error that refuses it."""
    token = None if refresh else _bearer()
    claims = verified_tokens().get(token)
    if claims is None:
        verify_jwt_in_request(refresh=refresh)  # signature, expiry, claims and revocation
        claims = get_jwt()
        if token is not None:
            verified_tokens().remember(token, claims)
        _decide(claims, minimum, revoked=False, near=None)
        return claims
    # A revocation this process has not yet written to Redis is only in the database: no copy is trusted.
    near = near_view() if read_only and revocation.nothing_pending() else None
    revoked = MISSING if near is None else near.get(revocation.key(claims["jti"]))
    _decide(claims, minimum, revoked=revoked, near=near)
    return claims


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None or not header.startswith("Bearer ") or "," in header:
        return None
    return header[7:]


def _decide(claims: dict[str, Any], minimum: str, *, revoked: Any, near: NearView | None) -> None:
    """Refuse (401 revoked, 403 role, 429 budget, in that order) or admit; `revoked` may be MISSING.

    What is not known here is asked of Redis in one round trip; where Redis cannot answer, the
    database says whether the token was revoked and the budget is not counted.
    """
    has_role = ROLE_RANK[claims["role"]] >= ROLE_RANK[minimum]
    group = ratelimit.group_of(request.endpoint) if has_role else None  # only callers with the role spend
    limit = current_app.config["RATE_LIMITS_PER_MINUTE"][group] if group else 0
    leases: ratelimit.Leases = current_app.extensions["budget_leases"]
    window = ratelimit.window(claims["org_id"], group) if group else None
    # None: Redis must be asked; 0: admitted from a held block; n > 0: refused for n seconds.
    wait = leases.take(window) if window is not None else 0

    commands: list[Command] = []
    if revoked is MISSING:
        commands.append(("GET", revocation.key(claims["jti"])))
    if window is not None and wait is None:
        commands += leases.commands(window, limit)
    replies = _ask(commands) if commands else []

    if revoked is MISSING:
        revoked = _revocation_answer(claims, replies[0] if replies else None, replies is not None, near)
        replies = None if replies is None else replies[1:]
    if revoked:
        raise ApiError(401, "token has been revoked", headers=UNAUTHORIZED_HEADERS)
    if not has_role:
        raise ApiError(403, f"this action needs the {minimum} role or higher")
    if window is not None and wait is None:
        # Redis unreachable: admitted, budgets protect capacity, they are not access control.
        wait = None if replies is None else leases.settle(window, limit, replies[0])
    if wait and group is not None:
        raise _spent(group, limit, wait)


def spend_budget(org_id: int, group: str, units: int = 1, *, scope: str | None = None) -> None:
    """Spend `units` requests of the organization's `group` budget: one for routes a token does not
    admit (embed links), more for an expensive read on top of the one its admission spent; 429 when
    it is spent, admitted when Redis cannot say. With `scope`, a budget of that one object's own
    (a download link's export): whoever spends it, the organization's other budgets stay whole."""
    limit = current_app.config["RATE_LIMITS_PER_MINUTE"][group]
    leases: ratelimit.Leases = current_app.extensions["budget_leases"]
    window = ratelimit.window(org_id, group if scope is None else f"{group}:{scope}")
    if units > 1:
        # Counted in Redis at once (where the blocks the processes hold are counted too).
        replies = _ask([("INCRBY", window.key, units), ("EXPIRE", window.key, ratelimit.WINDOW_SECONDS + 1)])
        if replies is not None and replies[0] > limit:
            wait = max(1, int(window.ends_at - time.time()) + 1)
            raise _spent(group, limit, wait, units, scoped=scope is not None)
        return
    wait = leases.take(window)
    if wait is None:
        replies = _ask(leases.commands(window, limit))
        wait = None if replies is None else leases.settle(window, limit, replies[0])
    if wait:
        raise _spent(group, limit, wait, scoped=scope is not None)


def _spent(group: str, limit: int, wait: int, units: int = 1, *, scoped: bool = False) -> ApiError:
    cost = f" (this request costs {units})" if units > 1 else ""
    whose = "this link's" if scoped else "the organization's"
    return ApiError(
        429,
        f"{whose} {group} budget of {limit} requests per minute is spent{cost}",
        details={"limit": limit, "group": group, "retry_after": wait, "units": units},
        headers={"Retry-After": str(wait)},
    )


def _ask(commands: list[Command]) -> list[Any] | None:
    """The replies to `commands` in one round trip, or None when Redis could not answer them all."""
    try:
        revocation.flush_pending(get_redis())
        replies = round_trip(commands)
    except redis.RedisError as exc:
        log.debug("token checks without Redis: %s", exc)
        return None
    g.redis_answered = True
    return None if any(isinstance(reply, Exception) for reply in replies) else replies


def redis_answered() -> bool:
    """Whether Redis answered a round trip of this request's admission (a moment ago)."""
    return bool(g.get("redis_answered"))


def _revocation_answer(
    claims: dict[str, Any], cached: bytes | None, reached: bool, near: NearView | None
) -> bool:
    """Whether the token was revoked, given what Redis held (`reached`: whether Redis answered at all)."""
    revoked = revocation.answer(
        cached,
        get_redis() if reached else None,
        session_factory(),
        jti=claims["jti"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        negative_ttl=negative_ttl(),
    )
    if near is not None and reached:
        ttl = claims["exp"] - time.time() if revoked else negative_ttl()
        near.put(revocation.key(claims["jti"]), revoked, ttl=ttl)
    return revoked
