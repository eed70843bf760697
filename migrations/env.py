"""Alembic environment for the ledger. Run through ``scrub db upgrade|current|check``, which
passes an open connection (``config.attributes["connection"]``); plain ``alembic`` works too
with ``-x url=...``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from scrub.ledger.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or \
        config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported: migrate a database")
run_migrations_online()
