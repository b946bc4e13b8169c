"""The Celery worker and beat entry point: `celery -A workers worker` / `celery -A workers beat`."""

from webapp import create_app
from workers import signals

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
signals.connect(flask_app, celery_app)

import workers.tasks  # noqa: E402,F401  (registers every task)
