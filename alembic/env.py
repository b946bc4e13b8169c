"""Alembic environment: the URL comes from the caller or from webapp.config."""

from sqlalchemy import pool

import webapp.models  # noqa: F401  (registers every table on Base.metadata)
from alembic import context
from webapp import config as settings
from webapp.infra.engines import make_engine
from webapp.models.base import Base

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        url = settings.database_url(settings.from_environment())
    if not url:
        raise RuntimeError("No database configured: set DATABASE_URL or run `make run` once.")
    return settings.normalize_database_url(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
