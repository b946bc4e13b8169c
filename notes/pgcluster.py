"""Start (or stop) a kept bench cluster and run SQL in it: python notes/pgcluster.py SIZE start|stop|sql 'SQL'."""

import sys
from pathlib import Path

sys.path.insert(0, ".")
import psycopg

from devstack.postgres import EmbeddedPostgres

size, action = sys.argv[1], sys.argv[2]
pg = EmbeddedPostgres(Path(f"instance/bench/postgres-bench_peer_{size}"), fast_unsafe=True)
if action == "stop":
    pg.stop()
    sys.exit()
pg.start()
pg.wait_ready()
if action == "sql":
    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname=bench_peer_{size}", autocommit=True
    ) as c:
        for stmt in sys.argv[3:]:
            cur = c.execute(stmt)
            if cur.description:
                for row in cur.fetchall():
                    print(*row, sep=" | ")
print("port", pg.port, file=sys.stderr)
