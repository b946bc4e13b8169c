"""Celery tasks: thin wrappers that pass ids to the domain and commit."""

from workers.tasks import (  # noqa: F401
    aggregation,
    alerts,
    cache,
    deliveries,
    exports,
    imports,
    maintenance,
    ops,
    reports,
    rollups,
    sla,
    snapshots,
)
