"""The web's connections start with the analytics statement timeout, so a read sets it with no round
trip; any other timeout (or one set before in the session) is still set per transaction, and
processes without the setting (workers, beat, the CLI) keep the server's default."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from webapp import config
from webapp.analytics import side_by_side, sql
from webapp.infra.engines import connection_timeout, make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def web_engine(base_app) -> Iterator[Engine]:
    engine = make_engine(base_app.extensions["db_engine"].url, statement_timeout_ms=4321)
    yield engine
    engine.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def _shown(session: Session) -> str:
    return session.execute(text("SHOW statement_timeout")).scalar_one()


def test_a_connection_starts_with_its_engines_timeout_and_a_read_sets_nothing(web_engine):
    assert connection_timeout(web_engine) == 4321
    seen = _statements(web_engine)
    with Session(web_engine) as session:
        sql.statement_timeout(session, 4321)
        assert _shown(session) == "4321ms"
        assert not any("set_config" in s for s in seen)
        # Side reads take their connections from an engine with the same start.
        assert side_by_side.run(session, [_shown, _shown]) == ["4321ms", "4321ms"]
    # Cancelled past it, as a SET LOCAL would have.
    with Session(web_engine) as session:
        sql.statement_timeout(session, 4321)
        session.execute(text("SET LOCAL statement_timeout = 50"))
        with pytest.raises(Exception, match="statement timeout"):
            session.execute(text("SELECT pg_sleep(1)"))


def test_another_timeout_is_set_per_transaction(web_engine, base_app):
    seen = _statements(web_engine)
    with Session(web_engine) as session:
        sql.statement_timeout(session, 1234)
        assert _shown(session) == "1234ms"
        # Asked for the connection's own after another: set again, not assumed.
        sql.statement_timeout(session, 4321)
        assert _shown(session) == "4321ms"
    assert sum("set_config" in s for s in seen) == 2
    # An engine without the setting (workers, beat, the CLI) starts with the server's default.
    plain = base_app.extensions["db_engine"]
    assert connection_timeout(plain) == 0
    with Session(plain) as session:
        assert _shown(session) == "0"


def test_only_the_web_process_gets_the_analytics_timeout(monkeypatch):
    monkeypatch.delenv("DB_STATEMENT_TIMEOUT_MS", raising=False)
    monkeypatch.setenv("ANALYTICS_STATEMENT_TIMEOUT_MS", "25000")
    assert config.from_environment()["DB_STATEMENT_TIMEOUT_MS"] == 0
    spec = importlib.util.spec_from_file_location("gunicorn_conf_timeout", ROOT / "gunicorn.conf.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "DB_STATEMENT_TIMEOUT_MS" not in os.environ  # loading the settings sets nothing
    module.on_starting(SimpleNamespace())
    assert config.from_environment()["DB_STATEMENT_TIMEOUT_MS"] == 25000
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "700")
    module.on_starting(SimpleNamespace())  # the operator's value wins
    assert config.from_environment()["DB_STATEMENT_TIMEOUT_MS"] == 700


def test_every_engines_connections_start_without_jit(base_app, web_engine: Engine) -> None:
    # A rollup merge with nested loops off costs past jit_above_cost on paper alone, and a server
    # built with LLVM then compiles for seconds: every connection starts with jit off, whatever else
    # it starts with.
    plain = make_engine(base_app.extensions["db_engine"].url)
    try:
        for engine in (plain, web_engine, base_app.extensions["db_engine"]):
            with Session(engine) as session:
                assert session.execute(text("SHOW jit")).scalar_one() == "off"
        with Session(web_engine) as session:
            assert _shown(session) == "4321ms"
    finally:
        plain.dispose()


def test_jit_off_is_added_to_the_options_the_url_or_pgoptions_give(base_app, monkeypatch) -> None:
    url = base_app.extensions["db_engine"].url
    with_options = url.update_query_dict({"options": "-c application_name=from-url"})
    for engine_url, env in ((with_options, None), (url, "-c application_name=from-env")):
        if env:
            monkeypatch.setenv("PGOPTIONS", env)
        engine = make_engine(engine_url)
        try:
            with Session(engine) as session:
                assert session.execute(text("SHOW jit")).scalar_one() == "off"
                name = session.execute(text("SHOW application_name")).scalar_one()
                assert name == ("from-env" if env else "from-url")
        finally:
            engine.dispose()
