"""The dashboard's pages (sign-in, overview, explorer, agents, alerts) and their hashed static files."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request
from werkzeug.exceptions import NotFound

from webapp.api.plumbing.errors import CODES, error_response, not_found
from webapp.web import headers
from webapp.web.assets import IMMUTABLE, URL_PREFIX, Manifest

bp = Blueprint("web", __name__, template_folder="templates")


def manifest() -> Manifest:
    """The static files this app serves, hashed when it was made."""
    return current_app.extensions["web_assets"]


@bp.app_context_processor
def asset_helpers() -> dict[str, object]:
    """`asset(path)` and `preloads(path)` for templates: hashed URLs of static files."""
    return {"asset": manifest().url, "preloads": manifest().preloads}


@bp.get(URL_PREFIX + "<path:name>")
def static_file(name: str) -> Response:
    """A static file by its hashed name, cacheable for a year: its name changes with its content."""
    asset = manifest().by_hashed.get(name)
    if asset is None:
        raise not_found("static file")
    body = asset.body
    compressed = asset.gzipped() if "gzip" in request.accept_encodings else None
    response = Response(compressed or body, mimetype=asset.mimetype)
    if compressed is not None:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _page(template: str, page: str) -> Response:
    # The session cookie is scoped to /web/session, out of the pages' sight: a page without a session
    # learns so from its first refresh and moves to the sign-in page.
    return headers.page(render_template(template, page=page))


@bp.get("/")
def overview() -> Response:
    """KPIs against the previous period, volume, SLA by priority and distributions, live."""
    return _page("overview.html", "overview")


@bp.get("/explorer")
def explorer() -> Response:
    """Any metric by granularity, range, filters and group-by, as a chart, a table and a curl line."""
    return _page("explorer.html", "explorer")


@bp.get("/agents")
def agents() -> Response:
    """Each agent's solved tickets, reply and resolution times, SLA, CSAT, one-touch and reopens."""
    return _page("agents.html", "agents")


@bp.get("/alerts")
def alerts() -> Response:
    """The alert rules with their live state and history; admins create and delete them."""
    return _page("alerts.html", "alerts")


@bp.get("/signin")
def signin() -> Response:
    """Email and password; the session then lives in an HttpOnly cookie, the access token in memory."""
    return _page("signin.html", "signin")


# The API's own paths answer JSON whatever a client asks for.
API_PATHS = "/api/"


def unknown_path(exc: NotFound) -> Response:
    """A path nothing serves: for a browser (which asks for HTML first) outside the API, a page saying
    so with a way back to the overview; for the API's paths and any other client, the API's JSON 404.

    The same URL answers two ways, so a cache between is told that the answer varies with Accept."""
    if request.path.startswith(API_PATHS):
        return error_response(404, exc.description or CODES[404])
    if headers.prefers_html():
        response = headers.page(render_template("not_found.html", path=request.path))
        response.status_code = 404
    else:
        response = error_response(404, exc.description or CODES[404])
    response.headers["Vary"] = "Accept"
    return response
