"""The embedded PostgreSQL and Redis of an instance: started (or found running) and stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from webapp import config

DATABASE = "ticket_analytics"


def up(settings: dict[str, Any]) -> dict[str, str]:
    """Start whatever is not configured by URL, or reuse it when an earlier run left it running, and
    record the URLs in instance/services.json (where webapp.config finds them)."""
    from devstack.postgres import EmbeddedPostgres
    from devstack.redis import EmbeddedRedis

    instance = Path(settings["INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    services: dict[str, str] = {}
    if settings["DATABASE_URL"] is None:
        pg = EmbeddedPostgres(instance / "postgres")
        reused = pg.is_running()
        pg.start()
        pg.wait_ready()
        pg.ensure_database(DATABASE)
        services["database_url"] = pg.url(DATABASE)
        state = "still running, reused" if reused else f"data in {pg.pgdata}"
        print(f"embedded PostgreSQL on 127.0.0.1:{pg.port} ({state})", flush=True)
    if settings["REDIS_URL"] is None:
        rd = EmbeddedRedis(instance / "redis")
        reused = rd.is_running()
        rd.start()
        services["redis_url"] = rd.url
        state = "still running, reused" if reused else f"data in {rd.datadir}"
        print(f"embedded Redis on 127.0.0.1:{rd.port} ({state})", flush=True)
    (instance / config.SERVICES_FILE).write_text(json.dumps(services, indent=2))
    return services


def down(instance: Path) -> None:
    """Stop the embedded servers (their data stays under instance/)."""
    from devstack.postgres import EmbeddedPostgres
    from devstack.redis import EmbeddedRedis

    if (instance / "redis").exists():
        EmbeddedRedis(instance / "redis").stop()
    if (instance / "postgres" / "pgdata").exists():
        EmbeddedPostgres(instance / "postgres").stop()
    (instance / config.SERVICES_FILE).unlink(missing_ok=True)


def down_test_servers(instance: Path) -> None:
    """Stop the test suite's PostgreSQL servers (instance/test*/postgres), which it leaves running
    for the next run. Only `make services-down` does: a `make run` ending must not stop a suite's."""
    from devstack.postgres import EmbeddedPostgres

    for cluster in sorted(instance.glob("test*/postgres")):
        if (cluster / "pgdata").exists():
            EmbeddedPostgres(cluster).stop()
