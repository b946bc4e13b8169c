"""Where each cold question's time goes: the whole request in-process (Flask test client, real
PostgreSQL and Redis), the SQL statements it ran with their times, and EXPLAIN (ANALYZE, BUFFERS)
of the slow ones. python notes/diagnose.py SIZE [SUBSTRING] [--explain]"""

import secrets
import sys
import time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, ".")
from sqlalchemy import event

from bench.bench_peer import prepare
from bench.common import scratch_redis
from bench.peer_questions import QUESTIONS, TZ, Window
from webapp import config, create_app
from webapp.models import User
from webapp.security.auth import access_token_for

size = int(sys.argv[1])
only = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else ""
explain = "--explain" in sys.argv
profile = "--profile" in sys.argv
import cProfile
import pstats

setup = prepare(size)
redis_server = scratch_redis("peer_diag")
settings = config.load()
settings.update(
    INSTANCE_PATH=str(setup.home / "instance"),
    SQLALCHEMY_DATABASE_URL=setup.url,
    REDIS_URL=redis_server.url,
    BROKER_URL=redis_server.url,
    JWT_SECRET_KEY=secrets.token_urlsafe(48),
    JWT_ACCESS_TOKEN_MINUTES=600,
    AGGREGATION_ASYNC_THRESHOLD=10**12,
    RATE_LIMIT_ANALYTICS_PER_MINUTE=10**9,
)
app = create_app(settings)
engine = app.extensions["db_engine"]
log = []


@event.listens_for(engine, "before_cursor_execute")
def before(conn, cursor, statement, parameters, context, executemany):
    conn.info["t"] = time.perf_counter()


@event.listens_for(engine, "after_cursor_execute")
def after(conn, cursor, statement, parameters, context, executemany):
    log.append(((time.perf_counter() - conn.info["t"]) * 1000, statement, parameters))


with app.app_context(), app.extensions["db_sessionmaker"]() as s:
    token = access_token_for(s.query(User).filter_by(email="admin@bench.test").one())
client = app.test_client()
headers = {"Authorization": f"Bearer {token}"}
end_day = setup.now.astimezone(TZ).date() + timedelta(days=1)
try:
    for q in QUESTIONS:
        if only and not any(part in q.name for part in only.split("|")):
            continue
        method, path, body = q.request(Window(end_day, datetime.now(UTC)))
        best = None
        for _ in range(3):
            client.delete("/api/v1/analytics/cache", headers=headers)
            log.clear()
            t = time.perf_counter()
            r = client.open(path, method=method, json=body, headers=headers)
            total = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, r.get_data()[:300]
            sql = sum(d for d, _, _ in log)
            if best is None or total < best[0]:
                best = (total, sql, list(log))
        total, sql, stmts = best
        if profile:
            client.delete("/api/v1/analytics/cache", headers=headers)
            prof = cProfile.Profile()
            prof.enable()
            client.open(path, method=method, json=body, headers=headers)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        print(
            f"\n## {q.name}: total {total:.1f} ms, SQL {sql:.1f} ms in {len(stmts)} statements, rest (Python, HTTP stack, Redis) {total - sql:.1f} ms"
        )
        for d, stmt, params in sorted(stmts, key=lambda x: -x[0])[:4]:
            print(f"   {d:8.1f} ms  {stmt[:150]!r}")
            if explain and d > 20:
                with engine.connect() as c:
                    plan = c.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params).fetchall()
                print("\n".join("        " + row[0] for row in plan))
finally:
    redis_server.stop()
