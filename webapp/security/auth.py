"""JWT setup, password hashing, and the per-route role check."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import redis
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.api.plumbing.errors import ApiError, error_response
from webapp.core.vocabulary import ROLES
from webapp.infra.db import get_session, session_factory
from webapp.infra.near_cache import MISSING, NearView
from webapp.infra.redis_client import get_leases, get_redis, get_wire, near_view
from webapp.infra.redis_wire import Command, round_trip
from webapp.models import User
from webapp.security import ratelimit, revocation

log = logging.getLogger(__name__)
jwt = JWTManager()

ALGORITHM = "HS256"
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
REQUIRED_CLAIMS = ("sub", "org_id", "role", "type", "jti", "exp")
# A real hash of a random password, so that an unknown email costs as much as a wrong password.
_DUMMY_HASH = generate_password_hash("no-such-user-password")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    user_id: int
    org_id: int
    role: str


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Constant-cost password check; False for a missing user."""
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(user.password_hash, password)


def _claims(user: User) -> dict[str, Any]:
    return {"org_id": user.org_id, "role": user.role}


def issue_tokens(user: User) -> dict[str, Any]:
    """The login answer: access and refresh tokens for `user`."""
    from flask import current_app

    minutes = current_app.config["JWT_ACCESS_TOKEN_MINUTES"]
    return {
        "access_token": create_access_token(str(user.id), additional_claims=_claims(user)),
        "refresh_token": create_refresh_token(str(user.id), additional_claims=_claims(user)),
        "token_type": "Bearer",
        "expires_in": minutes * 60,
    }


def access_token_for(user: User) -> str:
    return create_access_token(str(user.id), additional_claims=_claims(user))


def init_app(app: Flask) -> None:
    """Pin the algorithm, read the secret from config, and answer every JWT failure as JSON 401."""
    app.config.update(
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=app.config["JWT_ACCESS_TOKEN_MINUTES"]),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=app.config["JWT_REFRESH_TOKEN_DAYS"]),
        JWT_ERROR_MESSAGE_KEY="message",
    )
    jwt.init_app(app)
    app.extensions["verified_tokens"] = VerifiedTokens()

    def unauthorized(message: str) -> Response:
        return error_response(401, message, headers={"WWW-Authenticate": "Bearer"})

    jwt.unauthorized_loader(lambda reason: unauthorized(f"missing or malformed token: {reason}"))
    jwt.invalid_token_loader(lambda reason: unauthorized(f"invalid token: {reason}"))
    jwt.expired_token_loader(lambda header, payload: unauthorized("token has expired"))
    jwt.revoked_token_loader(lambda header, payload: unauthorized("token has been revoked"))
    jwt.token_verification_failed_loader(
        lambda header, payload: unauthorized("token is missing required claims")
    )
    jwt.user_lookup_error_loader(lambda header, payload: unauthorized("token user no longer exists"))

    @jwt.token_in_blocklist_loader
    def in_blocklist(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return token_revoked(payload)

    @jwt.token_verification_loader
    def has_required_claims(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        if any(claim not in payload for claim in REQUIRED_CLAIMS):
            return False
        return isinstance(payload["org_id"], int) and payload["role"] in ROLE_RANK


def token_revoked(claims: dict[str, Any]) -> bool:
    """Whether the decoded token `claims` was revoked by a logout (a token without jti counts as revoked)."""
    jti, exp = claims.get("jti"), claims.get("exp")
    if not isinstance(jti, str) or not isinstance(exp, int | float):
        return True
    return revocation.is_revoked(
        get_redis(),
        session_factory(),
        jti=jti,
        expires_at=datetime.fromtimestamp(exp, UTC),
        negative_ttl=_negative_ttl(),
    )


def _negative_ttl() -> int:
    return current_app.config["TOKEN_REVOCATION_CACHE_SECONDS"]


def revoke_token(claims: dict[str, Any]) -> None:
    """Revoke the decoded token `claims` until its expiry (Redis and the database)."""
    revocation.revoke(
        get_session(), get_redis(), jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC)
    )


class VerifiedTokens:
    """Access tokens whose signature and claims this app verified: the token string -> its claims.

    The same string always carries the same claims, so it needs no second signature check (which
    costs as much as a small request); expiry, revocation and the role are still checked on every
    request. Bounded: past `size` tokens the oldest is forgotten (and verified again if it returns).
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._claims: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def remember(self, token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            if len(self._claims) >= self._size:
                del self._claims[next(iter(self._claims))]  # dicts keep insertion order
            self._claims[token] = claims

    def get(self, token: str | None) -> dict[str, Any] | None:
        """The claims of `token` if it was verified before and has not expired since."""
        if token is None:
            return None
        claims = self._claims.get(token)
        if claims is None:
            return None
        if claims["exp"] <= time.time():
            with self._lock:
                self._claims.pop(token, None)  # the full check answers "token has expired"
            return None
        return claims


def _verified() -> VerifiedTokens:
    return current_app.extensions["verified_tokens"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None or not header.startswith("Bearer ") or "," in header:
        return None
    return header[7:]


def require_role(
    minimum: str = "viewer", *, refresh: bool = False, read_only: bool = False
) -> Callable[[F], F]:
    """Verify the bearer token and that its role is at least `minimum`; sets g.principal and g.claims.

    The route's request budget is spent only by callers with the role, after the token checks. A
    `read_only` route changes nothing, so the Redis part of the checks (revocation and budget) may
    ride along with its cache lookup (see `pending_admission`); they are settled before the lookup's
    answer is used, and after the view at the latest, when it made no lookup. On a `read_only` route
    a remembered token's checks may also be answered from this process's near cache and budget
    leases (g.near is the request's near-cache view), with no round trip at all.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = None if refresh else _bearer()
            claims = _verified().get(token)
            if claims is None:
                verify_jwt_in_request(refresh=refresh)  # signature, expiry, claims and revocation
                claims = get_jwt()
                if token is not None:
                    _verified().remember(token, claims)
                _check_role(claims, minimum)
                _spend_budget(claims["org_id"])
                admission = near = None
            else:
                # A revocation this process has not yet written to Redis is checked in the database.
                deferrable = read_only and revocation.nothing_pending()
                near = near_view() if deferrable else None
                admission = Admission(claims, minimum, _budget(), near, get_leases())
                if not admission.commands():
                    admission.settle([])  # known here: no round trip
                elif not deferrable:
                    admission.run()
            g.principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
            g.claims = claims
            g.admission = admission
            g.near = near
            if admission is None or admission.settled:
                return view(*args, **kwargs)
            try:
                response = view(*args, **kwargs)
            finally:
                if not admission.settled:
                    admission.run()  # a refused token outranks whatever the view answered
            return response

        return wrapper  # type: ignore[return-value]

    return decorator


def pending_admission() -> Admission | None:
    """The request's token checks still to be made, for its cache lookup to carry; None when made."""
    admission = g.get("admission")
    return admission if admission is not None and not admission.settled else None


def _check_role(claims: dict[str, Any], minimum: str) -> None:
    if ROLE_RANK[claims["role"]] < ROLE_RANK[minimum]:
        raise ApiError(403, f"this action needs the {minimum} role or higher")


def _budget() -> tuple[str, int] | None:
    """The request budget this route spends, and its limit per minute."""
    group = ratelimit.group_of(request.endpoint)
    if group is None:
        return None
    return group, current_app.config["RATE_LIMITS_PER_MINUTE"][group]


class Admission:
    """The checks of an already verified token that need Redis: revocation, then role, then budget.

    What this process knows already is not asked again: a revocation mark copied in the near cache
    (`near`), a request admitted from a budget block it holds (`leases`). The rest goes out in one
    round trip, on its own (`run`) or ahead of a cache lookup's (`commands`, then `settle` with their
    replies). Settling raises the API error that refuses the request.
    """

    def __init__(
        self,
        claims: dict[str, Any],
        minimum: str,
        budget: tuple[str, int] | None,
        near: NearView | None = None,
        leases: ratelimit.Leases | None = None,
    ) -> None:
        self.claims = claims
        self.minimum = minimum
        self.budget = budget
        self.near = near
        self.leases = leases or ratelimit.Leases()
        self.revoked_key = revocation.key(claims["jti"])
        self.revoked = MISSING if near is None else near.get(self.revoked_key)
        # Only callers with the role spend the budget.
        spends = budget is not None and ROLE_RANK[claims["role"]] >= ROLE_RANK[minimum]
        self.window = ratelimit.window(claims["org_id"], budget[0]) if spends and budget else None
        # None: Redis must be asked; 0: admitted from a held block; n > 0: refused for n seconds.
        self.wait = self.leases.take(self.window) if self.window is not None else 0
        self.settled = False

    def commands(self) -> list[Command]:
        """The commands still needed (their replies go to `settle` in this order)."""
        out: list[Command] = []
        if self.revoked is MISSING:
            out.append(("GET", self.revoked_key))
        if self.window is not None and self.wait is None and self.budget is not None:
            out += self.leases.commands(self.window, self.budget[1])
        return out

    def run(self) -> None:
        client = get_redis()
        try:
            revocation.flush_pending(client)
            replies: list[Any] | None = round_trip(client, get_wire(), self.commands())
        except redis.RedisError as exc:
            log.debug("token checks without Redis: %s", exc)
            replies = None
        self.settle(replies)

    def settle(self, replies: list[Any] | None) -> None:
        """Decide with the replies to `commands()` (None: Redis could not be asked)."""
        self.settled = True
        if replies is not None and any(isinstance(reply, Exception) for reply in replies):
            replies = None
        rest = replies
        revoked = self.revoked
        if revoked is MISSING:
            revoked = revocation.answer(
                replies[0] if replies else None,
                get_redis() if replies is not None else None,
                session_factory(),
                jti=self.claims["jti"],
                expires_at=datetime.fromtimestamp(self.claims["exp"], UTC),
                negative_ttl=_negative_ttl(),
            )
            if self.near is not None and replies is not None:
                ttl = self.claims["exp"] - time.time() if revoked else _negative_ttl()
                self.near.put(self.revoked_key, revoked, ttl=ttl)
            rest = None if replies is None else replies[1:]
        if revoked:
            raise ApiError(401, "token has been revoked", headers={"WWW-Authenticate": "Bearer"})
        _check_role(self.claims, self.minimum)
        if self.window is None or self.budget is None:
            return
        group, limit = self.budget
        wait = self.wait
        if wait is None:
            if rest is None:
                return  # Redis unreachable: budgets protect capacity, they are not access control
            wait = self.leases.settle(self.window, limit, rest[0])
        _refuse_when_spent(group, limit, wait or None)


def _spend_budget(org_id: int) -> None:
    budget = _budget()
    if budget is None:
        return
    group, limit = budget
    _refuse_when_spent(group, limit, ratelimit.spend(get_redis(), org_id, group, limit))


def _refuse_when_spent(group: str, limit: int, wait: int | None) -> None:
    if wait is not None:
        raise ApiError(
            429,
            f"the organization's {group} budget of {limit} requests per minute is spent",
            details={"limit": limit, "group": group, "retry_after": wait},
            headers={"Retry-After": str(wait)},
        )


def current_claims() -> dict[str, Any]:
    """The verified claims of the request's bearer token."""
    return g.claims


def current_principal() -> Principal:
    return g.principal
