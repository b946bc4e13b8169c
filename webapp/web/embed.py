"""The embed view: one read-only view of an organization, its filters locked by a signed link.

The link is the only credential: the page and its reads need no session, and they answer only the
view the link names, for its organization, with its filters. A request that tries to set a filter is
refused (403), whatever the page's controls would allow.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from webapp.analytics.metrics import METRICS
from webapp.analytics.window import Window
from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.query_errors import client_errors
from webapp.core.timeutil import utcnow
from webapp.core.vocabulary import DASHBOARD_PERIODS, DIMENSIONS
from webapp.models import Organization
from webapp.security.admission import spend_budget
from webapp.web import embed_links, embed_reads, headers
from webapp.web.embed_links import BadEmbedLink, EmbedClaims

bp = Blueprint("embed", __name__, url_prefix="/embed")

# The series the overview draws over time and in its tiles (panels.js; those the API serves are shown).
OVERVIEW_SERIES = ("ticket_count", "solved", "backlog", "csat")
# The breakdowns it draws (panels.js): a link shows no other field (agents' names, categories).
OVERVIEW_DISTRIBUTIONS = ("status", "priority", "channel")


def _claims(token: str) -> EmbedClaims:
    try:
        claims = embed_links.verify(token)
    except BadEmbedLink as exc:
        raise ApiError(403, "the embed link is not valid") from exc
    if claims.expired(utcnow()):
        raise ApiError(410, "the embed link has expired; ask an admin of the organization for a new one")
    # A link that names no maker was signed before links did: it cannot be withdrawn, so it is refused.
    if claims.maker_id is None or not embed_reads.maker_may_share(claims.org_id, claims.maker_id):
        raise ApiError(
            410,
            "the embed link was withdrawn: the admin who made it was deleted, disabled or is no longer "
            "an admin; ask an admin of the organization for a new one",
        )
    return claims


def _args(allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters among `allowed`; a filter is 403 (locked), anything else unknown 400."""
    for name in request.args:
        if name in DIMENSIONS:
            raise ApiError(
                403,
                f"the filters of an embedded view are locked by its link; {name!r} cannot be set",
                details={"field": name},
            )
        if name not in allowed:
            raise ApiError(
                400,
                f"unknown query parameter {name!r}; allowed: {', '.join(allowed)}",
                details={"field": name},
            )
        if len(request.args.getlist(name)) > 1:
            raise ApiError(400, f"query parameter {name!r} is given more than once", details={"field": name})
    return {name: request.args[name] for name in allowed if name in request.args}


def _choice(args: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = args.get(name, default)
    if value not in allowed:
        raise ApiError(
            400, f"{name} must be one of {', '.join(allowed)}, not {value!r}", details={"field": name}
        )
    return value


def _organization(claims: EmbedClaims) -> Organization:
    """The link's organization, once it has spent one request of its analytics budget."""
    org = embed_reads.organization(claims.org_id)
    if org is None:
        raise not_found("organization")
    spend_budget(org.id, "analytics")
    return org


def _window(org: Organization, args: dict[str, str], granularity: str | None = None) -> Window:
    period = _choice(args, "period", tuple(DASHBOARD_PERIODS), "30d")
    return embed_reads.last_days(org, DASHBOARD_PERIODS[period], granularity)


def _refuse_unless(allowed: bool) -> None:
    if not allowed:
        raise ApiError(403, "this embed link does not show that")


@bp.get("/<token>")
def page(token: str) -> Response:
    """The embedded page, framable only by the origins the link names (else by this site alone).

    A browser (which asks for HTML first) is told why a link does not open on a page of its own, with
    the same status, inside the frame the link allows; any other client gets the JSON error."""
    try:
        claims = _claims(token)
        # What the page's reads would refuse, refused by the page itself (not a page of errors).
        args = _args(("period", "granularity"))
        _choice(args, "period", tuple(DASHBOARD_PERIODS), "30d")
        if claims.view != "overview":
            _choice(args, "granularity", embed_reads.GRANULARITIES, "daily")
    except ApiError as exc:
        if not headers.prefers_html():
            # The same URL answers a browser with a page: a cache between must not mix the two.
            exc.headers = {**exc.headers, "Vary": "Accept", "Cache-Control": "no-store"}
            raise
        return _error_page(token, exc)
    html = render_template("embed.html", page="embed", view=claims.view, metric=claims.metric)
    return headers.page(html, frame_ancestors=claims.frame_ancestors or ("'self'",), referrer="no-referrer")


def _error_page(token: str, error: ApiError) -> Response:
    """`error` as a page, framable by the origins a link whose signature holds names (an expired one)."""
    try:
        ancestors = embed_links.verify(token).frame_ancestors
    except BadEmbedLink:
        ancestors = ()
    html = render_template("embed_error.html", message=error.message)
    response = headers.page(html, frame_ancestors=ancestors or ("'self'",), referrer="no-referrer")
    response.status_code = error.status
    response.headers["Vary"] = "Accept"
    return response


@bp.get("/<token>/api/dashboard")
def dashboard(token: str) -> Response:
    """The dashboard of the link's organization with its locked filters."""
    claims = _claims(token)
    _refuse_unless(claims.view == "overview")
    args = _args(("period",))
    org = _organization(claims)
    with client_errors():
        return embed_reads.dashboard(org, _window(org, args), claims.filters, args.get("period", "30d"))


@bp.get("/<token>/api/distribution/<field>")
def distribution(token: str, field: str) -> Response:
    """One distribution of the overview."""
    claims = _claims(token)
    _refuse_unless(claims.view == "overview" and field in OVERVIEW_DISTRIBUTIONS)
    args = _args(("period",))
    org = _organization(claims)
    with client_errors():
        return embed_reads.distribution(org, _window(org, args), claims.filters, field)


@bp.get("/<token>/api/time-series/<metric>")
def time_series(token: str, metric: str) -> Response:
    """The link's metric over time (time-series view), or one of the overview's daily series."""
    claims = _claims(token)
    if claims.view == "overview":
        _refuse_unless(metric in OVERVIEW_SERIES and metric in METRICS)
        granularities: tuple[str, ...] = ("daily",)
    else:
        _refuse_unless(metric == claims.metric)
        granularities = embed_reads.GRANULARITIES
    args = _args(("period", "granularity"))
    granularity = _choice(args, "granularity", granularities, "daily")
    org = _organization(claims)
    with client_errors():
        return embed_reads.time_series(org, _window(org, args, granularity), claims.filters, metric)
