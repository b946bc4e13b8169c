"""The OpenAPI document, and the interactive reference (Swagger UI, served from this server) over it."""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, current_app, render_template, request

from webapp.api.plumbing import openapi
from webapp.api.plumbing.spec import document
from webapp.web import headers

bp = Blueprint("docs", __name__)


def _document() -> tuple[bytes, str]:
    """The document as JSON and its ETag, built on first use: the routes are fixed once the app is made,
    and building it walks every route and model (hundreds of milliseconds on a busy machine)."""
    cached = current_app.extensions.get("openapi_document")
    if cached is None:
        body = json.dumps(openapi.build(current_app), separators=(",", ":")).encode()
        cached = (body, hashlib.sha256(body).hexdigest()[:32])
        current_app.extensions["openapi_document"] = cached
    return cached


@bp.get("/openapi.json")
@document("This OpenAPI document", tag="operations", errors=(), auth=False)
def spec() -> Response:
    """The document, or 304 when the client holds this version."""
    body, etag = _document()
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    # Revalidated on each use (a deploy may change it), answered 304 while it has not changed.
    response.cache_control.no_cache = True
    return response.make_conditional(request)


@bp.get("/docs")
@document(
    "The interactive API reference: every route of this document, tried from the browser",
    tag="operations",
    errors=(),
    auth=False,
    binary={200: "text/html"},
)
def docs_page() -> Response:
    """Swagger UI over /api/v1/openapi.json, from files of this server."""
    return headers.page(render_template("docs.html", page="docs"))
