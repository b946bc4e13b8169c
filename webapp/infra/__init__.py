"""Connections to the outside world: PostgreSQL, Redis (near cache), Celery, migrations, heartbeats."""
