"""Shared pieces of the ledger's security tests (items 12, 14, 15, 16, 17, 20): a database of
each kind (SQLite, and PostgreSQL in a schema of its own, which never skips), the ledger key,
requests, the CLI, and raw SQL as someone with database access but no key would write it.

Import the fixtures into a test module (``from tests.security.ledger_setup import database,
engine, key, ledger``) for pytest to find them there."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import Result

from scrub.crypto import write_key_file
from scrub.ledger import db
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from tests.helpers import run_cli

POSTGRES = os.environ.get("SCRUB_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
RECEIVED = "2026-11-01T10:00:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """(URL, engine options) of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}", {}
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield POSTGRES, {"schema": schema}
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def cli_url(database: tuple[str, dict]) -> str:
    """The database's URL as a user gives it to ``--db`` (PostgreSQL: its schema through
    ``search_path``)."""
    url, options = database
    return f"{url}?options=-csearch_path%3D{options['schema']}" if options else url


@pytest.fixture()
def engine(database: tuple[str, dict]) -> Iterator[Engine]:
    url, options = database
    engine = db.make_engine(url, **options)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture()
def key(tmp_path: Path) -> bytes:
    return write_key_file(tmp_path / "ledger.key")


@pytest.fixture()
def ledger(engine: Engine, key: bytes) -> Ledger:
    return Ledger(engine, seal=IdentitySeal(key))


def spec(email: str = "jane@example.org", items: list[dict] | None = None, *,
         kind: str = "gdpr_erasure", name: str = "Jane Doe",
         notes: str | None = None) -> RequestSpec:
    record: dict[str, object] = {
        "kind": kind, "received_at": RECEIVED, "requester": {"name": name, "email": email},
        "items": items or [{"type": "url", "value": "https://example.com/a/photo.jpg"},
                           {"type": "caption_term", "value": "Jane Doe"},
                           {"type": "md5", "value": "9e107d9d372bb6826bd81d3542a419d6"}]}
    if notes is not None:
        record["notes"] = notes
    return RequestSpec.parse(record, where="request")


def request_policies(folder: Path, *names: str) -> list[str]:
    """``--policy FILE`` options for policies named ``names`` (written in ``folder``) that each
    remove the ledger's verified requests and nothing else."""
    options: list[str] = []
    for name in names:
        policy = folder / f"{name}.toml"
        policy.write_text(f'[policy]\nname = "{name}"\n[ledger]\nrequests = true\n')
        options += ["--policy", str(policy)]
    return options


def cli(tmp_path: Path, database: tuple[str, dict], *args: str, key: bool = True,
        env: dict[str, str] | None = None) -> Result:
    """``scrub ARGS --db URL``, with the ledger key in ``SCRUB_KEY_FILE`` unless ``key`` is
    False."""
    environment = {"SCRUB_HOME": str(tmp_path / "home"), "SCRUB_ACTOR": "tester",
                   "SCRUB_KEY_FILE": str(tmp_path / "ledger.key") if key else ""}
    environment.update(env or {})
    return run_cli(*args, "--db", cli_url(database), env=environment)


def tamper(engine: Engine, *statements: str, **params: object) -> None:
    """SQL as someone with database access writes it: not through scrub's code."""
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def drop_foreign_keys(engine: Engine) -> None:
    """What an attacker with database access can do first (SQLite: the tables recreated
    without them is the same; foreign keys are off on a plain connection)."""
    if engine.dialect.name == "postgresql":
        tamper(engine, "ALTER TABLE events DROP CONSTRAINT fk_events_request_id_requests",
               "ALTER TABLE request_items DROP CONSTRAINT "
               "fk_request_items_request_id_requests")


def raw_sqlite(engine: Engine):  # type: ignore[no-untyped-def]
    """A plain sqlite3 connection to the ledger file (foreign keys off, as sqlite3's CLI)."""
    import sqlite3

    return sqlite3.connect(engine.url.database)


def text_of_database(engine: Engine) -> str:
    """Every stored value of every table, as text (bytes as their repr): what someone reading
    the database sees."""
    from sqlalchemy import inspect

    parts = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                parts.append(json.dumps([repr(bytes(v)) if isinstance(v, (bytes, memoryview))
                                         else str(v) for v in row], ensure_ascii=False))
    return "\n".join(parts)
