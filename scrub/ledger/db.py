"""Ledger databases: which one (flag, ``SCRUB_DATABASE_URL``, or SQLite under ``$SCRUB_HOME``),
engines set up for safe concurrent appends, and migrations through Alembic."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from scrub.errors import ExternalSourceError, UserInputError
from scrub.lists.store import default_home

if TYPE_CHECKING:
    from alembic.config import Config

URL_ENV = "SCRUB_DATABASE_URL"
MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


class DatabaseError(ExternalSourceError):
    """The ledger database cannot be reached, or is not at the code's schema (exit 3)."""


def resolve_url(url: str | None = None) -> str:
    """The database URL: ``url``, else ``$SCRUB_DATABASE_URL``, else ``$SCRUB_HOME/ledger.db``.
    ``postgresql://`` URLs use psycopg 3."""
    url = url or os.environ.get(URL_ENV) or f"sqlite:///{default_home() / 'ledger.db'}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain):]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise UserInputError(f"unsupported database URL scheme in {describe(url)}",
                             hint="use sqlite:///PATH or postgresql://HOST/DB")
    return url


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is named by its scheme only
        return url.split(":", 1)[0] + ":..."


def make_engine(url: str | None = None, *, schema: str | None = None) -> Engine:
    """An engine for the ledger. SQLite: foreign keys on, every transaction ``BEGIN
    IMMEDIATE`` (one writer at a time, so the event chain cannot fork), a busy timeout.
    PostgreSQL: ``schema`` puts the ledger in that schema (``search_path``)."""
    url = resolve_url(url)
    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # transactions begin below, not implicitly
            dbapi_connection.execute("PRAGMA foreign_keys = ON")
            # 64 MiB of page cache: large imports update several indexes of million-row tables
            dbapi_connection.execute("PRAGMA cache_size = -65536")

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:  # type: ignore[no-untyped-def]
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options = {"options": f"-c search_path={schema}"} if schema else {}
    return create_engine(url, pool_pre_ping=True, connect_args=options)


#: The newest migration's revision, which :func:`require_current` expects: a command that uses
#: the ledger checks it without importing Alembic (~0.4 s). Equal to the migrations' head
#: (:func:`head_revision`; tests/ledger/test_ledger.py checks it).
HEAD_REVISION = "0004"
#: Alembic's table of the database's revision.
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config

    # sys.stdout as it is now: Config's default is the stream of when alembic was imported
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The migrations' head, read from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    """The database's revision (Alembic's version table), None before the first migration."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return None
            versions = connection.execute(
                text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot reach the ledger database {describe(str(engine.url))} "
                            f"({type(exc.orig or exc).__name__})",
                            hint="check the URL and that the server runs") from None
    if len(versions) > 1:
        raise DatabaseError(f"the ledger database {describe(str(engine.url))} is at several "
                            f"revisions ({', '.join(sorted(versions))}); scrub's history has one")
    return versions[0] if versions else None


def upgrade(engine: Engine, revision: str = "head", *, key: bytes | None = None) -> None:
    """Migrate up to ``revision``. ``key`` (the ledger key) is needed by revisions that seal
    or key existing rows (0004, when the ledger holds any)."""
    from alembic import command

    _run(engine, lambda config: command.upgrade(config, revision), key=key)


def downgrade(engine: Engine, revision: str, *, key: bytes | None = None) -> None:
    from alembic import command

    _run(engine, lambda config: command.downgrade(config, revision), key=key)


def check(engine: Engine) -> None:
    """Alembic's check: raises when the models and the database differ."""
    from alembic import command

    _run(engine, command.check)


def _run(engine: Engine, action, *, key: bytes | None = None) -> None:  # type: ignore
    config = alembic_config()
    config.attributes["ledger_key"] = key
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            action(config)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed on {describe(str(engine.url))} "
                            f"({type(exc.orig or exc).__name__})") from None


def require_current(engine: Engine) -> None:
    """A clear error unless the database is at the code's schema."""
    current, head = current_revision(engine), HEAD_REVISION
    if current != head:
        state = "has no ledger yet" if current is None else f"is at revision {current}"
        raise DatabaseError(f"the ledger database {describe(str(engine.url))} {state}; "
                            f"this scrub needs revision {head}",
                            hint="run `scrub db upgrade` (with the same --db) first")
