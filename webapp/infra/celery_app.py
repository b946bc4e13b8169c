"""The Celery app bound to the Flask app: tasks run inside an application context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from celeryconfig import celery_settings
from webapp.infra import broker_transport
from webapp.infra.broker import JobQueue


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from celeryconfig and `app`'s settings; tasks run in `app`'s context."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    # kombu's Redis transport, with a released connection failing as a lost one (see the module).
    broker_transport.install()
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(celery_settings(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    # Jobs submitted by requests: their queued event and their task go in one round trip.
    app.extensions["job_queue"] = JobQueue(celery_app, app.extensions.get("redis"))
    return celery_app
