"""The engine, and one session per request or task."""

from __future__ import annotations

import logging
import select
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with the pool settings every process of the platform uses.

    A pooled connection is checked at checkout without a round trip while it can be: see _checkout.
    """
    options: dict[str, Any] = {}
    if "poolclass" not in kwargs:
        options.update(pool_size=10, max_overflow=20)
    options.update(kwargs)
    engine = create_engine(url, **options)
    if not options.get("pool_pre_ping"):
        event.listen(engine, "checkout", _checkout)
    return engine


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


def init_app(app: Flask) -> None:
    """Create the engine and session factory; close the request's session on teardown."""
    url = app.config["SQLALCHEMY_DATABASE_URL"]
    if not url:
        raise RuntimeError(
            "No database configured: set DATABASE_URL, or start the embedded one with `make run`."
        )
    if "db_sessionmaker" not in app.extensions:
        engine = make_engine(url)
        app.extensions["db_engine"] = engine
        app.extensions["db_sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def session_factory() -> sessionmaker[Session]:
    return current_app.extensions["db_sessionmaker"]


def get_session() -> Session:
    """The session of the current request or task, opened on first use."""
    if "db" not in g:
        g.db = session_factory()()
    return g.db


def close_quietly(session: Session) -> None:
    """Close `session`; a connection the server dropped since its last statement is let go, not raised.

    Closing rolls back the open transaction, and that rollback fails on a connection the server has
    closed (a restart, a failover) after the request or task already had its answer. SQLAlchemy has
    invalidated the connection by then, so the pool will not hand it out again; any other error is
    raised as before.
    """
    try:
        session.close()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost while closing a session: %s", _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _close_session(exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        close_quietly(session)  # closing rolls back whatever the request left open


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session of its own, committed on success and rolled back on error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        with suppress(DBAPIError):  # a lost connection must not hide the error that ended the block
            session.rollback()
        raise
    finally:
        close_quietly(session)
