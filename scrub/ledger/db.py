"""Ledger databases: which one (flag, ``SCRUB_DATABASE_URL``, or SQLite under ``$SCRUB_HOME``),
engines set up for safe concurrent appends, and migrations through Alembic."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError, StatementError

from scrub.errors import ExternalSourceError, UserInputError, brief
from scrub.lists.store import HOME_ENV, default_home
from scrub.shipped import migrations_folder

if TYPE_CHECKING:
    import sqlite3

    from alembic.config import Config

URL_ENV = "SCRUB_DATABASE_URL"


class DatabaseError(ExternalSourceError):
    """The ledger database cannot be reached, or is not at the code's schema (exit 3)."""


class NoLedgerError(DatabaseError):
    """There is no ledger where one was named: no SQLite file, or a database never migrated.
    Exit 2: the user creates it (``scrub db upgrade``) or names the right one. Still a
    DatabaseError, so callers that catch those catch this too."""

    exit_code = 2


def resolve_url(url: str | None = None) -> str:
    """The database URL: ``url``, else ``$SCRUB_DATABASE_URL``, else ``$SCRUB_HOME/ledger.db``.
    A plain file path (``~`` allowed) means a SQLite file; ``postgresql://`` URLs use
    psycopg 3."""
    url = url or os.environ.get(URL_ENV) or str(default_home() / "ledger.db")
    if "://" not in url:  # a path, as the demo prints one
        url = f"sqlite:///{os.path.abspath(os.path.expanduser(url))}"
    elif url.startswith("sqlite:///~"):
        url = f"sqlite:///{os.path.expanduser(url[len('sqlite:///'):])}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain):]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise UserInputError(f"unsupported database URL scheme in {describe(url)}",
                             hint="give a file path, sqlite:///PATH or postgresql://HOST/DB")
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


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
    PostgreSQL: ``schema`` puts the ledger in that schema (``search_path``).

    Nothing is created here: only :func:`upgrade` creates a SQLite file (and its folder), so
    commands that read the ledger never leave an empty one behind."""
    url = resolve_url(url)
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.isolation_level = None  # transactions begin below, not implicitly
            dbapi_connection.execute("PRAGMA foreign_keys = ON")
            # 64 MiB of page cache: large imports update several indexes of million-row tables
            dbapi_connection.execute("PRAGMA cache_size = -65536")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options = {"options": f"-c search_path={schema}"} if schema else {}
    return create_engine(url, pool_pre_ping=True, connect_args=options)


#: The newest migration's revision, which :func:`require_current` expects: a command that uses
#: the ledger checks it without importing Alembic (slow to import). Equal to the migrations' head
#: (:func:`head_revision`; tests/ledger/test_ledger.py checks it).
HEAD_REVISION = "0005"
#: Alembic's table of the database's revision.
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config

    # sys.stdout as it is now: Config's default is the stream of when alembic was imported
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(migrations_folder()))
    return config


def head_revision() -> str:
    """The migrations' head, read from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    """The database's revision (Alembic's version table), None before the first migration.
    A SQLite file that does not exist is a NoLedgerError (exit 2), never created here."""
    _require_file(engine)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return None
            versions = connection.execute(
                text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot reach the ledger database {describe(str(engine.url))} "
                            f"({_cause_name(exc)})",
                            hint="check the URL and that the server runs") from None
    if len(versions) > 1:
        raise DatabaseError(f"the ledger database {describe(str(engine.url))} is at several "
                            f"revisions ({', '.join(sorted(versions))}); scrub's history has one")
    return versions[0] if versions else None


def upgrade(engine: Engine, revision: str = "head", *, key: bytes | None = None) -> None:
    """Migrate up to ``revision``; the one call that creates a ledger. ``key`` (the ledger
    key) is needed by revisions that seal or key existing rows (0004, when the ledger holds
    any). A SQLite file it created is removed again when the migration fails; a folder or
    file that cannot be written is an OSError naming it (the CLI makes it exit 2)."""
    from alembic import command
    from alembic.util import CommandError

    def migrate(config: Config) -> None:
        try:
            command.upgrade(config, revision)
        except CommandError as exc:  # an unknown revision, or one below the current
            raise UserInputError(f"cannot migrate the ledger to revision {revision!r} "
                                 f"({brief(exc)})",
                                 hint=f"revisions run up to {HEAD_REVISION}; the default is "
                                      "head") from None

    created = _create_file(engine)
    try:
        _run(engine, migrate, key=key)
    except BaseException:
        engine.dispose()
        _remove(created)  # the file, then the folders made for it, innermost first
        raise


def downgrade(engine: Engine, revision: str, *, key: bytes | None = None) -> None:
    from alembic import command

    _run(engine, lambda config: command.downgrade(config, revision), key=key)


def check(engine: Engine) -> None:
    """Alembic's check: raises when the models and the database differ."""
    from alembic import command

    _run(engine, command.check)


def _run(engine: Engine, action: Callable[[Config], object], *,
         key: bytes | None = None) -> None:
    config = alembic_config()
    config.attributes["ledger_key"] = key
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            action(config)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed on {describe(str(engine.url))} "
                            f"({_cause_name(exc)})") from None


def _cause_name(exc: SQLAlchemyError) -> str:
    """The name of the driver's error behind ``exc`` (of ``exc`` itself when there is none):
    never its message, which may quote values."""
    cause = exc.orig if isinstance(exc, StatementError) else None
    return type(cause or exc).__name__


def require_ledger(engine: Engine) -> str:
    """The database's revision; a NoLedgerError (exit 2, saying how to create one) when the
    database holds no ledger (no SQLite file, or never migrated)."""
    current = current_revision(engine)
    if current is None:
        raise NoLedgerError(f"the ledger database {describe(str(engine.url))} has no ledger "
                            "yet", hint=_create_hint(engine))
    return current


def require_current(engine: Engine) -> None:
    """A clear error unless the database is at the code's schema."""
    current, head = require_ledger(engine), HEAD_REVISION
    if current != head:
        raise DatabaseError(f"the ledger database {describe(str(engine.url))} is at revision "
                            f"{current}; this scrub needs revision {head}",
                            hint="run `scrub db upgrade` (with the same --db) first")


def _is_default(path: Path | None) -> bool:
    """Whether ``path`` is the default ledger, ``$SCRUB_HOME/ledger.db``."""
    return path is not None and \
        os.path.abspath(path) == os.path.abspath(default_home() / "ledger.db")


def _create_hint(engine: Engine) -> str:
    """How to create the ledger a command looked for."""
    path = sqlite_file(str(engine.url))
    if _is_default(path):
        return (f"create the default ledger under {HOME_ENV} ({default_home()}) with "
                "`scrub db upgrade`, or name another with --db")
    target = str(path) if path is not None else describe(str(engine.url))
    return f"create it with `scrub db upgrade --db {target}` (or name another with --db)"


def _require_file(engine: Engine) -> None:
    """For SQLite: the ledger file exists (connecting would create an empty one)."""
    path = sqlite_file(str(engine.url))
    if path is None or path.is_file():
        return
    if path.exists():
        raise UserInputError(f"{path}: not a ledger database file (a folder or a special file)",
                             hint="name the ledger's file with --db")
    blocker = next((folder for folder in path.parents if folder.exists()), None)
    if blocker is not None and not blocker.is_dir():
        hint = (f"{HOME_ENV} ({default_home()}) must be a folder: set it to one, or name the "
                "ledger with --db") if _is_default(path) else "name the ledger's file with --db"
        raise UserInputError(f"{blocker}: a file where the ledger's folder should be", hint=hint)
    raise NoLedgerError(f"the ledger database {path} has no ledger yet: the file does not "
                        "exist", hint=_create_hint(engine))


def _create_file(engine: Engine) -> list[Path]:
    """Create a missing SQLite ledger file (owner-only) and its folders; what this call
    created, the file first. OSErrors (a read-only or file ``SCRUB_HOME``) propagate, with
    nothing left behind."""
    path = sqlite_file(str(engine.url))
    if path is None or path.exists():
        return []
    path = Path(os.path.abspath(path))
    missing = [folder for folder in path.parents if not folder.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        if isinstance(exc, FileExistsError) and exc.filename == str(path):
            return []  # another process created the file meanwhile: theirs
        _remove(missing)
        raise
    return [path, *missing]


def _remove(paths: list[Path]) -> None:
    """Remove files and (empty) folders this process created, in the order given."""
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
