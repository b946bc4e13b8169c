"""Shared benchmark plumbing: scratch embedded services, a printed table, and JSON results."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCH_INSTANCE = ROOT / "instance" / "bench"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def scratch_redis() -> Any:
    """A throwaway embedded Redis for one benchmark run."""
    from devstack.redis import EmbeddedRedis

    server = EmbeddedRedis(BENCH_INSTANCE / "redis", persist=False)
    server.start()
    return server


def scratch_postgres(database: str) -> tuple[Any, str]:
    """The benchmark PostgreSQL cluster and a fresh, migrated database in it."""
    import psycopg

    from devstack.postgres import EmbeddedPostgres
    from webapp.migrations import upgrade

    pg = EmbeddedPostgres(BENCH_INSTANCE / "postgres", fast_unsafe=True)
    pg.start()
    pg.wait_ready()
    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = pg.url(database)
    upgrade(url)
    return pg, url
