"""Webhook signatures: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

The timestamp is signed with the body, so a receiver can refuse replays older than it tolerates; a
retry is signed again with its own time (its body, and so its `id`, are the same).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Webhook-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix that tells a secret apart, not one)


def new_secret() -> str:
    """A fresh signing secret (256 random bits), shown to the client once."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>" under `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(secret: str, body: bytes, timestamp: int) -> str:
    """The Webhook-Signature header's value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"
