"""Engines with the pool settings every process of the platform uses (no Flask here: the domain
packages make engines of their own too)."""

from __future__ import annotations

import os
import select
import sys
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError

# Every connection starts without JIT compilation. The statements that turn nested loops off (rollup
# builds, merges, folds) get costs past jit_above_cost from the disabled paths alone: on a server
# built with LLVM (Debian's PostgreSQL 15) an import's merge spent 2.8 s of its 4.0 s compiling.
# Reads are built to take milliseconds, where compiling never pays; the embedded server has no JIT,
# so every benchmark was measured without it.
JIT_OFF = "-c jit=off"
# The statement timeout (ms) each engine's connections start with, for connection_timeout.
_TIMEOUTS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def make_engine(url: Any, *, statement_timeout_ms: int = 0, **kwargs: Any) -> Engine:
    """An engine for `url` with the pool settings every process of the platform uses.

    A pooled connection is checked at checkout without a round trip while it can be: see _checkout.
    Every connection starts with JIT off (JIT_OFF). With `statement_timeout_ms`, every connection
    starts with that statement timeout too (set when it connects, so a transaction that wants it
    needs no SET of its own: see connection_timeout).
    """
    options: dict[str, Any] = {}
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=20)
    options.update(kwargs)
    connect_args = dict(options.get("connect_args") or {})
    # Added to the options the URL or PGOPTIONS give (libpq reads PGOPTIONS only without any).
    given = (
        connect_args.get("options") or make_url(url).query.get("options") or os.environ.get("PGOPTIONS", "")
    )
    settings = [given if isinstance(given, str) else " ".join(given), JIT_OFF]
    if statement_timeout_ms:
        settings.append(f"-c statement_timeout={int(statement_timeout_ms)}")
    connect_args["options"] = " ".join(part for part in settings if part)
    options["connect_args"] = connect_args
    engine = create_engine(url, **options)
    _TIMEOUTS[engine] = int(statement_timeout_ms)
    if not options.get("pool_pre_ping"):
        event.listen(engine, "checkout", _checkout)
    return engine


def connection_timeout(bind: Engine | Connection) -> int:
    """The statement timeout (ms) the connections of `bind` start with (0: the server's default)."""
    return _TIMEOUTS.get(bind.engine, 0)


def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled connection the server has closed, making a round trip only when in doubt.

    An idle connection has nothing to read: the server sends nothing unasked. One whose socket has
    something (the server's goodbye and end of stream after a restart or a terminated backend, or
    a notice) is pinged; a failed ping, or a connection closed here, makes the pool discard it and
    check out another (DisconnectionError). Every request and task checks a connection out, so
    the usual case, nothing to read, costs a system call instead of a round trip to the server.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("the connection is closed")
    try:
        readable = _has_input(dbapi_connection.fileno())
    except (OSError, ValueError) as exc:
        raise DisconnectionError(str(exc)) from exc
    if not readable:
        return
    try:
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as exc:
        raise DisconnectionError(f"the server closed the connection: {exc}") from exc


_INPUT = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


def _has_input(fd: int) -> bool:
    """Whether socket `fd` has something to read (or was hung up), without waiting; OSError if it is
    not open.

    poll(2), not select(2): select refuses descriptors from FD_SETSIZE (1024) on, and a web worker
    holding thousands of WebSockets opens its database connections above that. The system's poll,
    not gevent's: a zero timeout never blocks, and gevent's poll would switch greenlets for nothing.
    """
    poller = _system_poll()()
    poller.register(fd, _INPUT)
    events = poller.poll(0)
    if any(flags & select.POLLNVAL for _, flags in events):
        raise OSError(f"file descriptor {fd} is not open")
    return bool(events)


def _system_poll() -> Callable[[], Any]:
    """select.poll as the system has it, also where gevent has patched the select module."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("select"):
        return monkey.get_original("select", "poll")
    return select.poll
