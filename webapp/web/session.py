"""The browser's session: sign-in puts the refresh token in an HttpOnly cookie, pages get access tokens.

The access token lives in the page's memory only (never localStorage); a reload exchanges the cookie
for a new one. The cookie is SameSite=Strict and scoped to these routes, and every route here also
demands a custom header, which a cross-site form cannot send and a cross-site script may not send
without a CORS preflight this server never grants.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jwt as pyjwt
from flask import Blueprint, Response, current_app, jsonify, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from webapp.api.plumbing.errors import ApiError, error_response
from webapp.api.plumbing.sign_in import signed_in_user
from webapp.api.plumbing.spec import parse_body
from webapp.api.schemas.common import LoginRequest
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import Organization, User
from webapp.security import families, throttle
from webapp.security.tokens import (
    REQUIRED_CLAIMS,
    issue_tokens,
    refreshed_tokens,
    revoke_token,
    token_revoked,
)

bp = Blueprint("web_session", __name__, url_prefix="/web/session")

REFRESH_COOKIE = throttle.REFRESH_COOKIE
COOKIE_PATH = "/web/session"
# Readable by the pages, and no credential: it tells them a session may exist, so that a page
# opened without one goes to sign-in at once instead of through a refresh answered 401.
HINT_COOKIE = "dashboard_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "dashboard"
# An email and a password fit in far less; anything bigger is refused before it is parsed.
MAX_BODY_BYTES = 4096


@bp.before_request
def refuse_cross_site() -> None:
    """Only the dashboard's own scripts may call these routes."""
    if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise ApiError(403, f"this route needs the header {CSRF_HEADER}: {CSRF_VALUE}")
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "cross-origin requests are refused")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is larger than the limit of {MAX_BODY_BYTES} bytes")


def _access_answer(user: User, access_token: str) -> dict[str, Any]:
    # The organization's zone: the pages' default ranges are its days, not the browser's.
    org = get_session().get(Organization, user.org_id)
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": current_app.config["JWT_ACCESS_TOKEN_MINUTES"] * 60,
        "user": {
            "id": user.id,
            "email": user.email,
            "role": user.role,
            "org_id": user.org_id,
            "timezone": org.timezone if org is not None else None,
        },
    }


def _secure() -> bool:
    base = current_app.config.get("PUBLIC_BASE_URL") or ""
    return request.is_secure or base.startswith("https://")


@bp.post("")
def sign_in() -> Response:
    """Email and password -> an access token in the answer, the refresh token in the cookie."""
    user = signed_in_user(parse_body(LoginRequest))
    tokens = issue_tokens(user)
    get_session().commit()
    response = jsonify(_access_answer(user, tokens["access_token"]))
    _set_cookies(response, tokens["refresh_token"])
    return response


def _set_cookies(response: Response, refresh_token: str) -> None:
    max_age = current_app.config["JWT_REFRESH_TOKEN_DAYS"] * 86400
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )
    response.set_cookie(HINT_COOKIE, "1", max_age=max_age, path="/", secure=_secure(), samesite="Strict")


def _claims(token: str, kind: str) -> dict[str, Any] | None:
    """The claims of a valid, unrevoked token of `kind` (access or refresh), else None."""
    try:
        claims = decode_token(token)
    except (pyjwt.InvalidTokenError, JWTExtendedException):
        return None
    if any(name not in claims for name in REQUIRED_CLAIMS) or claims["type"] != kind:
        return None
    return None if token_revoked(claims) else claims


def _cookie_claims() -> dict[str, Any] | None:
    """The claims of the cookie's refresh token, or None when it is missing, invalid, expired or revoked."""
    token = request.cookies.get(REFRESH_COOKIE)
    return _claims(token, "refresh") if token else None


@bp.post("/refresh")
def refresh() -> Response:
    """The cookie -> a new access token (a page load, or an access token about to expire), and the
    cookie's refresh token rotated (used up, its successor in the cookie)."""
    claims = _cookie_claims()
    session = get_session()
    user = session.get(User, int(claims["sub"])) if claims else None
    if claims is None or user is None or user.org_id != claims["org_id"] or user.disabled_at is not None:
        return _no_session()
    try:
        use = families.use_refresh(
            session,
            get_redis(),
            jti=claims["jti"],
            user_id=user.id,
            now=utcnow(),
            grace_seconds=current_app.config["REFRESH_REUSE_GRACE_SECONDS"],
        )
    except families.RefreshRefused:
        return _no_session()
    tokens = refreshed_tokens(user, use)
    session.commit()
    response = jsonify(_access_answer(user, tokens["access_token"]))
    _set_cookies(response, tokens["refresh_token"])
    return response


def _no_session() -> Response:
    response = error_response(401, "no valid session; sign in again")
    _clear(response)
    return response


@bp.post("/logout")
def sign_out() -> Response:
    """Revoke the cookie's refresh token and the tokens of its login (and the bearer access token, if
    one is sent, with its login's); drop the cookie."""
    # Both read before either is revoked: revoking one revokes its login's family, often the other.
    claims = _cookie_claims()
    header = request.headers.get("Authorization", "")
    access = _claims(header[7:], "access") if header.startswith("Bearer ") else None
    revoked = []
    if claims is not None:
        revoke_token(claims)
        revoked.append("refresh")
    if access is not None:
        revoke_token(access)
        revoked.append("access")
    response = jsonify({"revoked": revoked})
    _clear(response)
    return response


def _clear(response: Response) -> None:
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, secure=_secure(), httponly=True, samesite="Strict"
    )
    response.delete_cookie(HINT_COOKIE, path="/", secure=_secure(), samesite="Strict")
