"""Support-ticket analytics: the Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: settings, database, Redis, Celery, auth, blueprints."""
    from webapp import config, web
    from webapp.api import cache as analytics_cache
    from webapp.api import register_blueprints
    from webapp.api.plumbing import errors, path_ids, refusal_pace
    from webapp.cli import register_commands
    from webapp.infra import celery_app as broker
    from webapp.infra import db, redis_client
    from webapp.security import admission, throttle, tokens

    app = Flask(__name__, instance_path=str(config.instance_path()))
    if test_config is None:
        app.config.update(config.load())
    else:
        app.config.update(test_config)
    app.config["LINK_SIGNING_KEY"] = config.link_key(
        app.config["JWT_SECRET_KEY"], app.config.get("EXPORT_SIGNING_KEY")
    )
    app.json.sort_keys = False
    logging.basicConfig(
        level=app.config["LOG_LEVEL"],
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    path_ids.init_app(app)
    errors.init_app(app)
    refusal_pace.init_app(app)
    db.init_app(app)
    redis_client.init_app(app)
    broker.celery_init_app(app)
    tokens.init_app(app)
    admission.init_app(app)
    throttle.init_app(app)
    analytics_cache.init_app(app)
    register_blueprints(app)
    web.init_app(app)
    register_commands(app)
    return app
