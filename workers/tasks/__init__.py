"""Celery tasks: thin wrappers that pass ids to the domain and commit."""

from workers.tasks import aggregation, cache, exports, imports, maintenance, ops, rollups, sla, snapshots  # noqa: F401
