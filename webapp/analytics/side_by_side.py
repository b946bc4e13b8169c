"""Independent reads of one answer, side by side: PostgreSQL runs them at once, on backends (and CPUs)
of their own, while this process waits for them all.

A composite answer (the dashboard, the performance report) is a handful of statements that need
nothing from each other; one after another on one connection they take the sum of their times, side
by side about the longest. The first read runs on the caller's session; each other one on a session
of its own, from a small pool kept for these reads alone (`SIDE_POOL_SIZE` connections a process), so
a side read only ever waits for another side read, never for a request's connection: a full pool of
requests each waiting for side reads cannot lock up. Each side session gets the statement timeout of
the caller's. The reads run in threads (greenlets in the web's gevent workers), in the context of the
caller (its read options and provenance: `analytics.provenance`).

Reads run one after another instead on a session bound to a connection rather than an engine (a test
inside a transaction it rolls back: other sessions could not see its rows).
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from webapp.analytics import sql
from webapp.infra.engines import make_engine

SIDE_POOL_SIZE = 4

Read = Callable[[Session], Any]

_side_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def run(session: Session, reads: Sequence[Read]) -> list[Any]:
    """Each read's answer, in order; the reads side by side where they can be."""
    bind = session.get_bind()
    if len(reads) < 2 or not isinstance(bind, Engine):
        return [read(session) for read in reads]
    side = _side_engine(bind)
    timeout = session.info.get(sql.TIMEOUT_KEY)

    def on_own_session(read: Read) -> Any:
        with Session(bind=side) as own:
            sql.statement_timeout(own, timeout)
            return read(own)

    with ThreadPoolExecutor(max_workers=len(reads) - 1, thread_name_prefix="side-read") as pool:
        futures = [pool.submit(contextvars.copy_context().run, on_own_session, read) for read in reads[1:]]
        first = reads[0](session)
        return [first, *(future.result() for future in futures)]


def _side_engine(engine: Engine) -> Engine:
    """The side reads' engine of `engine`'s database (made on first use, one per engine and process)."""
    with _lock:
        side = _side_engines.get(engine)
        if side is None:
            side = _side_engines[engine] = make_engine(engine.url, pool_size=SIDE_POOL_SIZE, max_overflow=0)
        return side
