"""JWT setup, the tokens a login issues, a token's revocation, and the tokens this process verified."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from sqlalchemy import select
from sqlalchemy.orm import object_session

from webapp.core.errors import error_body
from webapp.core.vocabulary import ROLES
from webapp.infra.db import get_session, session_factory
from webapp.infra.redis_client import get_redis
from webapp.models import User
from webapp.security import families, revocation

jwt = JWTManager()

ALGORITHM = "HS256"
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
REQUIRED_CLAIMS = ("sub", "org_id", "role", "type", "jti", "exp")
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def issue_tokens(user: User) -> dict[str, Any]:
    """The login answer: access and refresh tokens for `user`, of a new family (refreshes keep theirs:
    refreshed_tokens).

    Both are recorded in the user's session (committed by the caller)."""
    family = uuid.uuid4().hex
    return _answer(_token(user, "access", family), _token(user, "refresh", family))


def refreshed_tokens(user: User, use: families.RefreshUse) -> dict[str, Any]:
    """The refresh answer: a new access token of the used token's family, and its successor.

    The successor is issued (and recorded) by the first use; a retry within the grace gets the same
    token again, signed anew from its record (same claims, same bytes), so one chain lives on."""
    access = _token(user, "access", use.family)
    if use.successor is None:
        refresh = _token(user, "refresh", use.family, jti=use.successor_jti)
    else:
        refresh = _signed(
            user, "refresh", use.family, jti=use.successor_jti, expires_at=use.successor.expires_at
        )
    return _answer(access, refresh)


def _answer(access_token: str, refresh_token: str) -> dict[str, Any]:
    """The body a login or a refresh answers (TokenResponse)."""
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": current_app.config["JWT_ACCESS_TOKEN_MINUTES"] * 60,
    }


def access_token_for(user: User) -> str:
    """A new access token carrying the user's organization and role, of no family (the CLI's)."""
    return _token(user, "access", None)


def _token(user: User, kind: str, family: str | None, *, jti: str | None = None) -> str:
    """A signed token of `kind` (a new jti unless given), recorded in the user's session if it has one."""
    expires_at = (datetime.now(UTC) + _lifetime(kind)).replace(microsecond=0)
    jti = jti or str(uuid.uuid4())
    token = _signed(user, kind, family, jti=jti, expires_at=expires_at)
    session = object_session(user)
    if session is not None:
        families.record(session, jti=jti, user_id=user.id, family=family, type=kind, expires_at=expires_at)
    return token


def _signed(user: User, kind: str, family: str | None, *, jti: str, expires_at: datetime) -> str:
    """The token of `kind` with this jti and expiry: every claim follows from them and the user (its
    issue time too, expiry less lifetime), so signing it again gives the same token."""
    issued_at = int((expires_at - _lifetime(kind)).timestamp())
    claims: dict[str, Any] = {
        "org_id": user.org_id,
        "role": user.role,
        "jti": jti,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": int(expires_at.timestamp()),
    }
    if family is not None:
        claims["fam"] = family
    create = create_access_token if kind == "access" else create_refresh_token
    return create(str(user.id), additional_claims=claims)


def _lifetime(kind: str) -> timedelta:
    """How long a token of `kind` lasts: a token's issue time is its expiry less this."""
    config = current_app.config
    return config["JWT_ACCESS_TOKEN_EXPIRES"] if kind == "access" else config["JWT_REFRESH_TOKEN_EXPIRES"]


def any_case_bearer(wsgi_app: Any) -> Any:
    """The WSGI app `wsgi_app` with the Authorization header's scheme written `Bearer` however the
    client spelled it: scheme names are case-insensitive (RFC 9110 11.1), and every reader of the
    header (the JWT extension's included) then sees one spelling."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION")
        if header and header[:7].lower() == "bearer " and not header.startswith("Bearer "):
            environ["HTTP_AUTHORIZATION"] = "Bearer " + header[7:]
        return wsgi_app(environ, start_response)

    return app


REFRESH_PATH = "/api/v1/auth/refresh"


def refresh_token_in_body(wsgi_app: Any, max_bytes: int) -> Any:
    """The WSGI app `wsgi_app` taking a refresh request's token from a JSON body `{"refresh_token":
    ...}` when it sends no Authorization header (the contract says only "refresh token"; clients
    send it either way): the token is then the bearer token every reader of the header sees. A body
    over `max_bytes` (the route's limit, answered 413 by the app), or one that is not such an object,
    is left as it came."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if (
            environ.get("PATH_INFO") == REFRESH_PATH
            and environ.get("REQUEST_METHOD") == "POST"
            and not environ.get("HTTP_AUTHORIZATION")
            and environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() == "application/json"
        ):
            try:
                length = int(environ.get("CONTENT_LENGTH") or -1)
            except ValueError:
                length = -1
            if 0 < length <= max_bytes:
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)
                try:
                    token = json.loads(body).get("refresh_token")
                except (ValueError, AttributeError):
                    token = None
                if isinstance(token, str) and token.isascii() and token.strip():
                    environ["HTTP_AUTHORIZATION"] = "Bearer " + token.strip()
        return wsgi_app(environ, start_response)

    return app


# Words of the JWT library's that describe how a token failed to decode (a codec, base64 padding, the
# number of segments): said as one plain reason rather than the library's own.
_MALFORMED = ("codec", "padding", "segments", "Invalid header string", "Invalid payload string")


def _invalid_reason(reason: str) -> str:
    """Why a token is invalid, as a client is told: the library's reason, unless it speaks of the
    decoder's insides ("'utf-8' codec can't decode byte 0xb7 ...", "Invalid header padding")."""
    if any(word in reason for word in _MALFORMED):
        return "not a well-formed JWT (three base64url parts: header, payload, signature)"
    return reason


def init_app(app: Flask) -> None:
    """Pin the algorithm, read the secret from config, and answer every JWT failure as JSON 401;
    the bearer scheme is read in any case (any_case_bearer), a refresh token from the body too
    (refresh_token_in_body)."""
    app.wsgi_app = refresh_token_in_body(app.wsgi_app, app.config["AUTH_BODY_MAX_BYTES"])  # type: ignore[method-assign]
    app.wsgi_app = any_case_bearer(app.wsgi_app)  # type: ignore[method-assign]
    app.config.update(
        JWT_ALGORITHM=ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ALGORITHM],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=app.config["JWT_ACCESS_TOKEN_MINUTES"]),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=app.config["JWT_REFRESH_TOKEN_DAYS"]),
        JWT_ERROR_MESSAGE_KEY="message",
        # Tokens are read from headers only (the browser's refresh cookie has its own CSRF defence):
        # a random csrf claim would only keep a refresh retry's successor from being signed again
        # byte for byte.
        JWT_COOKIE_CSRF_PROTECT=False,
    )
    jwt.init_app(app)
    app.extensions["verified_tokens"] = VerifiedTokens()

    def unauthorized(message: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        # Flask encodes the body as every other error of the API is encoded.
        return error_body(401, message), 401, UNAUTHORIZED_HEADERS

    jwt.unauthorized_loader(lambda reason: unauthorized(f"missing or malformed token: {reason}"))
    jwt.invalid_token_loader(lambda reason: unauthorized(f"invalid token: {_invalid_reason(reason)}"))
    jwt.expired_token_loader(lambda header, payload: unauthorized("token has expired"))
    jwt.revoked_token_loader(lambda header, payload: unauthorized("token has been revoked"))
    jwt.token_verification_failed_loader(
        lambda header, payload: unauthorized("token is missing required claims")
    )
    jwt.user_lookup_error_loader(lambda header, payload: unauthorized("token user no longer exists"))

    @jwt.token_in_blocklist_loader
    def in_blocklist(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return token_revoked(payload)

    @jwt.user_lookup_loader
    def active_user(header: dict[str, Any], payload: dict[str, Any]) -> int | None:
        # Once per token and process (then VerifiedTokens answers): a token of a user deleted or
        # disabled since is refused even when it was never recorded (those recorded are revoked then).
        return get_session().scalar(
            select(User.id).where(
                User.id == int(payload["sub"]), User.org_id == payload["org_id"], User.disabled_at.is_(None)
            )
        )

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
        negative_ttl=negative_ttl(),
    )


def negative_ttl() -> int:
    """How long Redis may answer "not revoked" for a token before the database is asked again."""
    return current_app.config["TOKEN_REVOCATION_CACHE_SECONDS"]


def revoke_token(claims: dict[str, Any]) -> None:
    """Revoke the decoded token `claims` until its expiry (Redis and the database), and every token of
    its family (the login it descends from) with it."""
    revocation.revoke(
        get_session(), get_redis(), jti=claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC)
    )
    family = claims.get("fam")
    if isinstance(family, str):
        families.revoke_family(get_session(), get_redis(), family, datetime.now(UTC))


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
        """Keep `claims` as what `token` carries."""
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


def verified_tokens() -> VerifiedTokens:
    """The process's memory of verified tokens."""
    return current_app.extensions["verified_tokens"]
