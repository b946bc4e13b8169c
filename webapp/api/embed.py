"""Embed links: an admin makes a signed, expiring URL to one read-only view with locked filters."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.query_errors import client_errors
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.schemas.embed import EmbedToken, EmbedTokenRequest
from webapp.core.filters import parse_filters
from webapp.core.timeutil import utcnow
from webapp.security.admission import current_principal, require_role
from webapp.web import embed_links

bp = Blueprint("embed_tokens", __name__)


@bp.post("/embed-tokens")
@document(
    "A signed, expiring link to one read-only view of the organization with locked filters, for an iframe",
    tag="embed",
    body=EmbedTokenRequest,
    responses={201: EmbedToken},
    errors=(400, 401, 403, 429),
)
@require_role("admin")
@idempotent
def create_embed_token() -> tuple[Response, int]:
    """Sign a link to the body's view for the caller's organization."""
    body = parse_body(EmbedTokenRequest)
    if (body.view == "time-series") != (body.metric is not None):
        raise ApiError(
            400, "metric is required for a time-series view, and only there", details={"field": "metric"}
        )
    with client_errors():
        filters = parse_filters(body.filters)
    principal = current_principal()
    claims = embed_links.EmbedClaims(
        org_id=principal.org_id,
        view=body.view,
        metric=body.metric,
        filters=filters,
        frame_ancestors=tuple(dict.fromkeys(body.frame_ancestors)),
        expires_at=embed_links.lasting(body.expires_in, utcnow()),
        maker_id=principal.user_id,
    )
    return jsonify(claims.answer()), 201
