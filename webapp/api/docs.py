"""The OpenAPI document, and the interactive reference (Swagger UI, served from this server) over it."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template

from webapp.api.plumbing import openapi
from webapp.api.plumbing.spec import document
from webapp.web import headers

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
@document("This OpenAPI document", tag="operations", errors=(), auth=False)
def spec() -> Response:
    return jsonify(openapi.build(current_app))


@bp.get("/docs")
@document(
    "The interactive API reference: every route of this document, tried from the browser",
    tag="operations",
    errors=(),
    auth=False,
    binary={200: "text/html"},
)
def docs_page() -> Response:
    return headers.page(render_template("docs.html", page="docs"))
