"""Signed, expiring download links for export files.

A link's token carries the export id, the organization and the expiry, signed with HMAC-SHA256
(itsdangerous) under the link key (EXPORT_SIGNING_KEY, by default derived from the JWT secret, so a
link never verifies as a token nor a token as a link) and a salt of its own, so a signed token of
another kind (an embed link) never verifies here. A link is a capability: it downloads the file with
no other credential until it expires or the export is deleted.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, has_request_context, request
from itsdangerous import BadData, BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from webapp.models.jobs import Export

SALT = "export-download-link-v2"


class BadLink(Exception):
    """The token was not signed by us, or was altered."""


@dataclass(frozen=True)
class LinkClaims:
    export_id: str
    org_id: int
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class _CanonicalSerializer(URLSafeSerializer):
    """URLSafeSerializer that also refuses a signature not written as it signs one: base64 of a
    32-byte HMAC leaves 2 spare bits in its last character, which decoding ignores, so changing that
    character could otherwise leave a link valid (a tampered link must be refused)."""

    def loads(self, s: str | bytes, salt: str | bytes | None = None, **kwargs: Any) -> Any:
        text = s.decode("ascii", "replace") if isinstance(s, bytes) else s
        signature = text.rsplit(".", 1)[-1]
        try:
            canonical = base64_encode(base64_decode(signature)).decode("ascii") == signature
        except BadData:
            canonical = False
        if not canonical:
            raise BadSignature("the signature is not in its canonical form")
        return super().loads(s, salt, **kwargs)


def serializer(salt: str) -> URLSafeSerializer:
    """Signs and verifies the links of one purpose (`salt`) with HMAC-SHA256 under the link key."""
    return _CanonicalSerializer(
        current_app.config["LINK_SIGNING_KEY"], salt=salt, signer_kwargs={"digest_method": hashlib.sha256}
    )


def _serializer() -> URLSafeSerializer:
    return serializer(SALT)


def sign(export_id: uuid.UUID | str, org_id: int, expires_at: datetime) -> str:
    """A URL-safe token for downloading export `export_id` of `org_id` until `expires_at`."""
    return _serializer().dumps({"e": str(export_id), "o": org_id, "x": int(expires_at.timestamp())})


def verify(token: str) -> LinkClaims:
    """The claims of a token we signed; BadLink if it is not one (expiry is the caller's check)."""
    try:
        payload: Any = _serializer().loads(token)
        return LinkClaims(
            export_id=str(payload["e"]),
            org_id=int(payload["o"]),
            expires_at=datetime.fromtimestamp(int(payload["x"]), UTC),
        )
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise BadLink("the download link is not valid") from exc


def download_link(export: Export, now: datetime) -> tuple[str, datetime]:
    """A fresh download URL for `export` and when it expires (never after the file's own expiry).

    Absolute, so that it works on its own (a mail client, `curl -O`): on PUBLIC_BASE_URL; where it
    is not set, on the address the request came to, or outside a request (a worker's job result)
    on LOCAL_BASE_URL (`make run` sets it); relative only when none is known.
    """
    ttl = timedelta(seconds=current_app.config["EXPORT_LINK_TTL_SECONDS"])
    expires_at = min(now + ttl, export.expires_at)
    # Whole seconds, as the token carries them, so the expiry we announce is the one we enforce.
    expires_at = expires_at.replace(microsecond=0)
    token = sign(export.id, export.org_id, expires_at)
    return f"{_base_url()}/api/v1/exports/{export.id}/download?token={token}", expires_at


def _base_url() -> str:
    config = current_app.config
    base = config.get("PUBLIC_BASE_URL") or (request.host_url if has_request_context() else None)
    return (base or config.get("LOCAL_BASE_URL") or "").rstrip("/")
