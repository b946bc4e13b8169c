"""Who may open a socket: a browser's origin, then an access token or a one-time ticket.

A ticket (`POST /ws/ticket`) stands for the token it was issued with, for 30 s and one use, so a
browser can open the socket without putting the token in the URL.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from flask_jwt_extended import decode_token

from webapp.api.plumbing.errors import ApiError
from webapp.security.admission import Principal
from webapp.security.tokens import REQUIRED_CLAIMS, ROLE_RANK, token_revoked

TICKET_SECONDS = 30


@dataclass
class Identity:
    """Who holds a socket, until when, and the token's id (the socket closes once a logout revokes it,
    see revocations)."""

    principal: Principal
    expires_at: float
    jti: str


def _ticket_key(ticket: str) -> str:
    return f"an:wsticket:{ticket}"


def issue_ticket(client: redis.Redis, principal: Principal, claims: Mapping[str, Any]) -> str:
    """A one-time ticket for the token of `claims`, kept in Redis for TICKET_SECONDS (RedisError if not)."""
    ticket = secrets.token_urlsafe(32)
    # The token's jti too: a ticket redeemed after that token's logout is refused like the token.
    payload = {
        "user_id": principal.user_id,
        "org_id": principal.org_id,
        "role": principal.role,
        "exp": claims["exp"],
        "jti": claims["jti"],
    }
    client.set(_ticket_key(ticket), json.dumps(payload), ex=TICKET_SECONDS)
    return ticket


def from_token(token: str) -> Identity | None:
    """The identity an access token gives, or None for anything else (refresh token, revoked, forged)."""
    try:
        claims = decode_token(token)
    except Exception:
        return None
    if any(c not in claims for c in REQUIRED_CLAIMS) or claims.get("type") != "access":
        return None
    if claims["role"] not in ROLE_RANK or not isinstance(claims["org_id"], int):
        return None
    if token_revoked(claims):
        return None
    principal = Principal(int(claims["sub"]), claims["org_id"], claims["role"])
    return Identity(principal, float(claims["exp"]), claims["jti"])


def from_ticket(client: redis.Redis, ticket: str) -> Identity | None:
    """The identity a one-time ticket stands for, used up by this call; None if unknown or spent."""
    try:
        raw = client.getdel(_ticket_key(ticket))
    except redis.RedisError:
        return None
    if raw is None:
        return None
    data = json.loads(raw)
    # A ticket without a jti (issued before tickets kept it) counts as revoked, as a token would.
    if token_revoked({"jti": data.get("jti"), "exp": data["exp"]}):
        return None
    return Identity(Principal(data["user_id"], data["org_id"], data["role"]), float(data["exp"]), data["jti"])


def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """Whether a socket from `origin` may open on `host` (same host, or listed in `allowed`)."""
    if not origin:
        return True  # not a browser: Origin protects browsers' ambient credentials only
    if origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == host


def identify(
    client: redis.Redis,
    headers: Mapping[str, str],
    args: Mapping[str, str],
    *,
    host: str,
    allowed_origins: list[str],
) -> Identity:
    """Who opens the socket: from the Authorization header, `?ticket=` or (older clients) `?token=`.

    Raises ApiError 403 for a foreign origin, 401 without a valid token or ticket.
    """
    if not origin_allowed(headers.get("Origin"), host, allowed_origins):
        raise ApiError(403, "origin not allowed")
    header = headers.get("Authorization", "")
    identity = None
    if header.startswith("Bearer "):
        identity = from_token(header[7:].strip())
    elif args.get("ticket"):
        identity = from_ticket(client, args["ticket"])
    elif args.get("token"):
        identity = from_token(args["token"])
    if identity is None or identity.expires_at <= time.time():
        raise ApiError(401, "a valid access token or one-time ticket is required")
    return identity
