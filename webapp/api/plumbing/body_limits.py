"""How many bytes each route's body may hold, refused with 413 before a byte of it is parsed.

Sign-in and token routes take a few KiB (an email, a password, a token): a flood of big bodies at
them, which anyone may send without a token, costs a header check and the reading of what the client
sends (DRAIN_*), never a JSON parse. Imports take IMPORT_MAX_BYTES; every other route BODY_MAX_BYTES.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import gevent
from flask import request
from gevent import monkey

from webapp.core.errors import ApiError

# The routes anyone may call with a body: the tiny limit. (A path no route matches reads no body.)
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


def enforce(config: Mapping[str, Any], *, drain: bool = True) -> tuple[int, str]:
    """Refuse a body announced larger than the route's limit, and cap what is read of one that is not
    announced (chunked) at one byte past the limit; the route's limit and its setting.

    werkzeug stops reading an unannounced body at `max_content_length` and answers 413 only when
    asked for more: a body read whole ends at the cap as if it ended there. So the cap is one byte
    past the limit, and the caller refuses a body that reaches it (checked_length)."""
    limit, setting = limit_for(request.endpoint, config)
    if request.content_length is not None and request.content_length > limit:
        if drain:
            # Read and dropped first: a client that asked to close the connection after the answer
            # was sent a reset instead (closed with its body unread), and never read the 413.
            _drain(min(request.content_length, DRAIN_MAX_BYTES))
        raise too_large(limit, setting)
    request.max_content_length = limit + 1
    return limit, setting


# What is read and dropped of a body past its limit before the 413 goes out, so that the client,
# still sending, reads the answer instead of a reset connection: an announced body whole up to
# DRAIN_MAX_BYTES, an unannounced one as much again as the limit (1 MiB at least); for 2 s at most
# either way. A longer body is cut off by closing the connection.
DRAIN_SECONDS = 2.0
DRAIN_MIN_BYTES = 1024 * 1024
DRAIN_MAX_BYTES = 64 * 1024 * 1024


def checked_length(data: bytes, limit: int, setting: str) -> None:
    """413 when `data`, the whole body as read, passes the route's limit (an unannounced body read
    up to the cap of enforce), after draining what is left of it within DRAIN_*."""
    if len(data) > limit:
        _drain(max(limit, DRAIN_MIN_BYTES))
        raise too_large(limit, setting)


def _drain(budget: int) -> None:
    """Read and drop up to `budget` bytes of the body, for DRAIN_SECONDS at most in all."""
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    try:
        with _interrupted_after(DRAIN_SECONDS):
            while budget > 0:
                chunk = stream.read(min(budget, 64 * 1024))
                if not chunk:
                    return
                budget -= len(chunk)
    except Exception:  # a client gone or a malformed chunk: the 413 goes out all the same
        return


def _interrupted_after(seconds: float) -> AbstractContextManager[object]:
    """A block that is left after `seconds`, however it waits: gunicorn's input reads until it holds
    what was asked, so a client sending a byte now and then would hold a read (and the connection)
    for as long as it liked, where a deadline checked between reads never came. Under gevent (the
    web workers) every wait yields to the hub, whose timer ends the block; elsewhere the body is
    already in memory (a test client), and nothing waits."""
    if not monkey.is_module_patched("socket"):
        return contextlib.nullcontext()
    return gevent.Timeout(seconds, False)
