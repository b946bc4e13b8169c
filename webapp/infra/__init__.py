"""Connections to the outside world: PostgreSQL, Redis (wire, near cache), Celery, migrations, heartbeats."""
