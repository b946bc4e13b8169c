"""Embed links: a signed, expiring, read-only capability for one view of one organization.

The token carries the organization, the admin who made it, the view (and its metric), the locked
filters, the origins that may frame it and the expiry, signed with HMAC-SHA256 (itsdangerous) under
a salt of its own, so an export link or any other token of this server never verifies as an embed
link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeSerializer

from webapp.security import signing

SALT = "embed-view-v2"
VIEWS = ("overview", "time-series")
PATH_PREFIX = "/embed/"


class BadEmbedLink(Exception):
    """The token was not signed by this server as an embed link, or was altered."""


@dataclass(frozen=True)
class EmbedClaims:
    """What a link shows: one view of one organization, its locked filters, who may frame it, until when."""

    org_id: int
    view: str
    metric: str | None
    filters: dict[str, list[str | None]]
    frame_ancestors: tuple[str, ...]
    expires_at: datetime
    # The admin who made the link: it works while they are an enabled admin of the organization (None
    # in links signed before makers were named, which are refused).
    maker_id: int | None = None

    def expired(self, now: datetime) -> bool:
        """Whether the link no longer works at `now`."""
        return now >= self.expires_at

    def answer(self) -> dict[str, Any]:
        """The link as POST /embed-tokens answers it: its URL and what it shows."""
        return {
            "url": url_for(sign(self)),
            "view": self.view,
            "metric": self.metric,
            "filters": self.filters,
            "frame_ancestors": list(self.frame_ancestors),
            "expires_at": self.expires_at.isoformat(),
        }


def lasting(seconds: int, now: datetime) -> datetime:
    """The expiry `seconds` after `now`, in whole seconds as the token carries it."""
    return (now + timedelta(seconds=seconds)).replace(microsecond=0)


def _serializer() -> URLSafeSerializer:
    return signing.serializer(SALT)


def sign(claims: EmbedClaims) -> str:
    """The URL-safe token of `claims` (the expiry in whole seconds, as it is enforced)."""
    return _serializer().dumps(
        {
            "o": claims.org_id,
            "v": claims.view,
            "m": claims.metric,
            "f": claims.filters,
            "a": list(claims.frame_ancestors),
            "x": int(claims.expires_at.timestamp()),
            "u": claims.maker_id,
        }
    )


def verify(token: str) -> EmbedClaims:
    """The claims of an embed token this server signed; BadEmbedLink otherwise (expiry is the caller's)."""
    try:
        payload: Any = _serializer().loads(token)
        claims = EmbedClaims(
            org_id=int(payload["o"]),
            view=str(payload["v"]),
            metric=payload["m"],
            filters=dict(payload["f"]),
            frame_ancestors=tuple(payload["a"]),
            expires_at=datetime.fromtimestamp(int(payload["x"]), UTC),
            maker_id=None if payload.get("u") is None else int(payload["u"]),
        )
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise BadEmbedLink("the embed link is not valid") from exc
    if claims.view not in VIEWS:
        raise BadEmbedLink("the embed link is not valid")
    return claims


def url_for(token: str) -> str:
    """The embed page's absolute URL (it is pasted into other sites): on PUBLIC_BASE_URL, else this host."""
    base = (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")
    return f"{base}{PATH_PREFIX}{token}"
