"""The pages, their static assets and the embed view."""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import NotFound


def init_app(app: Flask) -> None:
    """Hash the static files once, and register the pages, the browser session and the embed view."""
    from webapp.web import embed, pages, session
    from webapp.web.assets import Manifest

    app.extensions["web_assets"] = Manifest()
    for blueprint in (pages.bp, session.bp, embed.bp):
        app.register_blueprint(blueprint)
    # More specific than the API's handler of every HTTP error (webapp.api.plumbing.errors), which
    # still answers the API's own paths' 404s, in JSON, through it.
    app.register_error_handler(NotFound, pages.unknown_path)
