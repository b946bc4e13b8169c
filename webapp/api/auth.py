"""Login, token refresh and logout."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Literal

import jwt as pyjwt
from flask import Blueprint, Response, current_app, jsonify, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from pydantic import BaseModel, Field

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.sign_in import signed_in_user
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.schemas.common import LoginRequest, Strict, TokenResponse
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import User
from webapp.security import families
from webapp.security.admission import current_claims, current_principal, require_role
from webapp.security.tokens import UNAUTHORIZED_HEADERS, issue_tokens, refreshed_tokens, revoke_token

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/login")
@document(
    "Exchange email and password for access and refresh tokens",
    tag="auth",
    body=LoginRequest,
    responses={200: TokenResponse},
    errors=(400, 401, 409, 429),
    auth=False,
)
def login() -> Response:
    user = signed_in_user(parse_body(LoginRequest))
    session = get_session()
    tokens = issue_tokens(user)
    session.commit()
    return jsonify(tokens)


class RefreshRequest(Strict):
    refresh_token: str | None = Field(
        default=None,
        max_length=4096,
        description="the refresh token, when it is not sent as the bearer token (no Authorization header)",
    )


def _body_checked(view: Callable[[], Response]) -> Callable[[], Response]:
    """A refresh's body, when it sends one, checked before its token: the body may be the credential,
    so one its schema refuses (not an object, refresh_token no string, another field) is a 400 that
    says so, not a 401 for a token that was never found."""

    @wraps(view)
    def wrapper() -> Response:
        if request.get_data(cache=True):  # a form's body too, which request.data leaves out
            parse_body(RefreshRequest)
        return view()

    return wrapper


@bp.post("/refresh")
@document(
    "Exchange a refresh token (as the bearer token, or without an Authorization header as "
    '{"refresh_token": "..."} in a JSON body) for a new access token and a new refresh token; '
    "the one sent is used up: sent again within REFRESH_REUSE_GRACE_SECONDS (10) of its use, a "
    "client's concurrent or retried refresh, it is answered with the same new refresh token and a "
    "new access token of the same login; sent again later, it revokes every token of its login",
    tag="auth",
    body=RefreshRequest,
    body_optional=True,
    responses={200: TokenResponse},
    errors=(400, 401, 415, 429),
)
@_body_checked
@require_role("viewer", refresh=True)
def refresh() -> Response:
    principal = current_principal()
    session = get_session()
    user = session.get(User, principal.user_id)
    if user is None or user.org_id != principal.org_id or user.disabled_at is not None:
        raise ApiError(401, "token user no longer exists", headers=UNAUTHORIZED_HEADERS)
    try:
        use = families.use_refresh(
            session,
            get_redis(),
            jti=current_claims()["jti"],
            user_id=user.id,
            now=utcnow(),
            grace_seconds=current_app.config["REFRESH_REUSE_GRACE_SECONDS"],
        )
    except families.RefreshRefused as exc:
        raise ApiError(401, str(exc), headers=UNAUTHORIZED_HEADERS) from exc
    tokens = refreshed_tokens(user, use)
    session.commit()
    return jsonify(tokens)


class LogoutRequest(Strict):
    refresh_token: str | None = Field(
        default=None, max_length=4096, description="a refresh token of the same user to revoke as well"
    )


class LogoutResponse(BaseModel):
    revoked: list[Literal["access", "refresh"]]


@bp.post("/logout")
@document(
    "Revoke the bearer access token and every token of its login (its refresh tokens too), and the "
    "refresh token in the body, if given, with its login's tokens",
    tag="auth",
    body=LogoutRequest,
    body_optional=True,
    responses={200: LogoutResponse},
    errors=(400, 401, 503),
)
@require_role("viewer")
def logout() -> Response:
    # The body is optional: the access token's family holds the refresh tokens of its login.
    refresh_token = parse_body(LogoutRequest).refresh_token if request.data else None
    refresh_claims = _refresh_claims(refresh_token) if refresh_token else None
    claims = current_claims()
    revoke_token(claims)
    revoked = ["access"]
    if refresh_claims is not None:
        revoke_token(refresh_claims)
    if refresh_claims is not None or "fam" in claims:
        revoked.append("refresh")
    return jsonify({"revoked": revoked})


def _refresh_claims(token: str) -> dict[str, Any] | None:
    """The claims of a refresh token of the caller; None when it has expired (nothing to revoke)."""
    try:
        claims = decode_token(token)
    except pyjwt.ExpiredSignatureError:
        return None
    except (pyjwt.InvalidTokenError, JWTExtendedException) as exc:
        raise ApiError(
            400, "refresh_token is not a valid refresh token", details={"field": "refresh_token"}
        ) from exc
    principal = current_principal()
    if (
        claims.get("type") != "refresh"
        or claims.get("sub") != str(principal.user_id)
        or claims.get("org_id") != principal.org_id
        or not isinstance(claims.get("jti"), str)
    ):
        raise ApiError(
            400, "refresh_token is not a refresh token of this user", details={"field": "refresh_token"}
        )
    return claims
