"""The /api/v1 blueprints, one module per resource."""

from __future__ import annotations

from flask import Blueprint, Flask


def register_blueprints(app: Flask) -> None:
    from webapp.api import (
        alerts,
        analytics,
        auth,
        cache,
        docs,
        exports,
        health,
        imports,
        jobs,
        ping,
        report_schedules,
        schedules,
        sla,
        tickets,
        users,
        webhooks,
    )
    from webapp.api.embed import bp as embed_tokens
    from webapp.api.plumbing import spec
    from webapp.api.ws import socket as ws

    api = Blueprint("api", __name__, url_prefix="/api/v1")
    modules = (
        auth,
        users,
        imports,
        tickets,
        sla,
        schedules,
        analytics,
        exports,
        jobs,
        cache,
        alerts,
        webhooks,
        report_schedules,
        ws,
        health,
        ping,
        docs,
    )
    for module in modules:
        api.register_blueprint(module.bp)
    api.register_blueprint(embed_tokens)
    app.register_blueprint(api)
    ws.init_app(app)
    spec.refuse_undeclared_query(app)
    spec.refuse_undeclared_body(app)
