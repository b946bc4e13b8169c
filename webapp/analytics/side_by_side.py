"""Independent reads of one answer, side by side: PostgreSQL runs them at once, on backends (and CPUs)
of their own, while this process waits for them all.

A composite answer (the dashboard, the performance report) is a handful of statements that need
nothing from each other; one after another on one connection they take the sum of their times, side
by side about the longest. The first read runs on the caller's session; each other one on a session
of its own, from a small pool kept for these reads alone (`SIDE_POOL_SIZE` connections a process),
taken only when one is free at once: a read that finds none runs in turn on the caller's session, so
no answer ever waits for a side connection, and a full pool of requests cannot lock up. Each side
session gets the statement timeout of the caller's. The reads run in threads (greenlets in the web's
gevent workers), in the context of the caller (its read options and provenance:
`analytics.provenance`).

Reads run one after another instead on a session bound to a connection rather than an engine (a test
inside a transaction it rolls back: other sessions could not see its rows).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from webapp.analytics import sql
from webapp.infra.engines import connection_timeout, make_engine

SIDE_POOL_SIZE = 4

Read = Callable[[Session], Any]

_side_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def run(session: Session, reads: Sequence[Read]) -> list[Any]:
    """Each read's answer, in order; the reads side by side where they can be.

    A read gets a side session only if the side pool has a connection free at once; the others run
    in turn on the caller's session after the first, so a burst of composite answers never waits
    for side connections (nor fails for want of one).
    """
    bind = session.get_bind()
    if len(reads) < 2 or not isinstance(bind, Engine):
        return [read(session) for read in reads]
    timeout = session.info.get(sql.TIMEOUT_KEY)
    with contextlib.ExitStack() as stack:
        connections: list[Connection] = []
        side = _side_engine(bind)
        for _ in reads[1:]:
            try:
                connections.append(stack.enter_context(side.connect()))
            except sa_exc.TimeoutError:
                break  # the side pool is busy: the remaining reads run in turn
        if not connections:
            return [read(session) for read in reads]
        beside, in_turn = reads[1 : 1 + len(connections)], reads[1 + len(connections) :]

        def on_own_session(read: Read, connection: Connection) -> Any:
            with Session(bind=connection) as own:
                sql.statement_timeout(own, timeout)
                return read(own)

        with ThreadPoolExecutor(max_workers=len(connections), thread_name_prefix="side-read") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, on_own_session, read, connection)
                for read, connection in zip(beside, connections, strict=True)
            ]
            first = reads[0](session)
            after = [read(session) for read in in_turn]
            return [first, *(future.result() for future in futures), *after]


def _side_engine(engine: Engine) -> Engine:
    """The side reads' engine of `engine`'s database (made on first use, one per engine and process)."""
    with _lock:
        side = _side_engines.get(engine)
        if side is None:
            # No waiting for a connection: a read that finds none free runs on the caller's session.
            side = _side_engines[engine] = make_engine(
                engine.url,
                statement_timeout_ms=connection_timeout(engine),
                pool_size=SIDE_POOL_SIZE,
                max_overflow=0,
                pool_timeout=0,
            )
        return side
