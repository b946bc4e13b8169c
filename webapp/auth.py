"""JWT setup, password hashing, and the per-route role check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)
from werkzeug.security import check_password_hash, generate_password_hash

from webapp import ratelimit, revocation
from webapp.api.errors import ApiError, error_response
from webapp.db import get_session, session_factory
from webapp.models import User
from webapp.models.organizations import ROLES
from webapp.redis_client import get_redis

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
        negative_ttl=current_app.config.get(
            "TOKEN_REVOCATION_CACHE_SECONDS", revocation.DEFAULT_NEGATIVE_TTL
        ),
    )


def revoke_token(claims: dict[str, Any]) -> None:
    """Revoke the decoded token `claims` until its expiry (Redis and the database)."""
    revocation.revoke(
        get_session(), get_redis(), jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC)
    )


def require_role(minimum: str = "viewer", *, refresh: bool = False) -> Callable[[F], F]:
    """Verify the bearer token and that its role is at least `minimum`; sets g.principal."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request(refresh=refresh)
            claims = get_jwt()
            principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
            if ROLE_RANK[principal.role] < ROLE_RANK[minimum]:
                raise ApiError(403, f"this action needs the {minimum} role or higher")
            g.principal = principal
            _spend_budget(principal.org_id)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def _spend_budget(org_id: int) -> None:
    group = ratelimit.group_of(request.endpoint)
    if group is None:
        return
    limit = current_app.config["RATE_LIMITS_PER_MINUTE"][group]
    wait = ratelimit.spend(get_redis(), org_id, group, limit)
    if wait is not None:
        raise ApiError(
            429,
            f"the organization's {group} budget of {limit} requests per minute is spent",
            details={"limit": limit, "group": group, "retry_after": wait},
            headers={"Retry-After": str(wait)},
        )


def current_principal() -> Principal:
    return g.principal
