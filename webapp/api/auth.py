"""Login and token refresh."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import func, select

from webapp.api.errors import ApiError
from webapp.api.schemas import LoginRequest, TokenResponse
from webapp.api.spec import document, parse_body
from webapp.auth import access_token_for, current_principal, issue_tokens, require_role, verify_password
from webapp.db import get_session
from webapp.models import User

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/login")
@document(
    "Exchange email and password for access and refresh tokens",
    tag="auth",
    body=LoginRequest,
    responses={200: TokenResponse},
    errors=(400, 401, 429),
    auth=False,
)
def login() -> Response:
    data = parse_body(LoginRequest)
    session = get_session()
    user = session.scalar(select(User).where(func.lower(User.email) == data.email.strip().lower()))
    if not verify_password(user, data.password):
        raise ApiError(401, "wrong email or password")
    assert user is not None
    return jsonify(issue_tokens(user))


@bp.post("/refresh")
@document(
    "Exchange a refresh token (as the bearer token) for a new access token",
    tag="auth",
    responses={200: TokenResponse},
    errors=(401,),
)
@require_role("viewer", refresh=True)
def refresh() -> Response:
    principal = current_principal()
    user = get_session().get(User, principal.user_id)
    if user is None or user.org_id != principal.org_id:
        raise ApiError(401, "token user no longer exists")
    from flask import current_app

    return jsonify(
        {
            "access_token": access_token_for(user),
            "token_type": "Bearer",
            "expires_in": current_app.config["JWT_ACCESS_TOKEN_MINUTES"] * 60,
        }
    )
