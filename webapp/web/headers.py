"""The headers every HTML page goes out with: a strict Content-Security-Policy, no caching, no framing."""

from __future__ import annotations

import re
from collections.abc import Sequence

from flask import Response, request

# The Host header reaches the policy only when it is a plain host[:port]: anything else could
# smuggle a directive in.
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
NOT_FRAMED = ("'none'",)


def prefers_html() -> bool:
    """Whether the request ranks HTML above JSON, as a browser's navigation does (`Accept: text/html,
    ...`); curl's default `*/*` and fetch's ask for neither first."""
    accepted = request.accept_mimetypes
    return accepted["text/html"] > accepted["application/json"]


def content_security_policy(frame_ancestors: Sequence[str] = NOT_FRAMED) -> str:
    """Scripts, styles and connections from this origin only; no inline script or style markup."""
    # CSP 3 counts the same host's ws:/wss: as 'self'; they are named too for browsers before it.
    sockets = f" ws://{request.host} wss://{request.host}" if _PLAIN_HOST.match(request.host) else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors " + " ".join(frame_ancestors),
        )
    )


def page(
    html: str, *, frame_ancestors: Sequence[str] = NOT_FRAMED, referrer: str = "same-origin"
) -> Response:
    """An HTML page that is never cached and, unless `frame_ancestors` names origins, never framed."""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(frame_ancestors)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = referrer
    if tuple(frame_ancestors) == NOT_FRAMED:
        # For browsers that predate frame-ancestors; with origins to allow it would forbid them all.
        response.headers["X-Frame-Options"] = "DENY"
    return response
