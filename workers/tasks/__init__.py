"""Celery tasks: thin wrappers that pass ids to the domain and commit."""

from workers.tasks import cache, ops  # noqa: F401
