"""The engine, and one session per request or task."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from flask import Flask, current_app, g
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from webapp.infra.engines import make_engine

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Create the engine and session factory; close the request's session on teardown."""
    url = app.config["SQLALCHEMY_DATABASE_URL"]
    if not url:
        raise RuntimeError(
            "No database configured: set DATABASE_URL, or start the embedded one with `make run`."
        )
    if "db_sessionmaker" not in app.extensions:
        engine = make_engine(url, statement_timeout_ms=app.config.get("DB_STATEMENT_TIMEOUT_MS", 0))
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
    release_session()


def release_session() -> None:
    """Close the request's session now, if it opened one (its connection goes back to the pool)."""
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
