"""How many bytes each route's body may hold, refused with 413 before a byte of it is parsed.

Sign-in and token routes take a few KiB (an email, a password, a token): a flood of big bodies at
them, which anyone may send without a token, costs a header check, never a JSON parse. Imports take
IMPORT_MAX_BYTES; every other route BODY_MAX_BYTES.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from webapp.core.errors import ApiError

# The routes anyone may call with a body: the tiny limit. So does a path no route matches.
AUTH_ENDPOINTS = frozenset(
    {
        "api.auth.login",
        "api.auth.refresh",
        "api.auth.logout",
        "api.ws.issue_ticket",
        "web_session.sign_in",
        "web_session.refresh",
        "web_session.sign_out",
    }
)
IMPORT_ENDPOINTS = frozenset({"api.ticket_imports.create"})


def limit_for(endpoint: str | None, config: Mapping[str, Any]) -> tuple[int, str]:
    """The body limit of a route in bytes, and the setting that holds it."""
    if endpoint is None or endpoint in AUTH_ENDPOINTS:
        return config["AUTH_BODY_MAX_BYTES"], "AUTH_BODY_MAX_BYTES"
    if endpoint in IMPORT_ENDPOINTS:
        return config["IMPORT_MAX_BYTES"], "IMPORT_MAX_BYTES"
    return config["BODY_MAX_BYTES"], "BODY_MAX_BYTES"


def too_large(limit: int, setting: str) -> ApiError:
    return ApiError(
        413,
        f"request body is larger than the limit of {limit} bytes for this route ({setting})",
        details={"max_bytes": limit, "setting": setting},
    )


def enforce(config: Mapping[str, Any]) -> None:
    """Refuse a body announced larger than the route's limit, and cap what is read of one that is not
    announced (chunked): werkzeug stops at the limit with a 413 instead of reading on."""
    limit, setting = limit_for(request.endpoint, config)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, setting)
    request.max_content_length = limit
