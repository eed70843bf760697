"""Ledger tests run on SQLite and on PostgreSQL (127.0.0.1:5432, database ``test``, or
``SCRUB_TEST_POSTGRES_URL``). PostgreSQL tests fail when the server is unreachable: they never
skip, so a CI run without the database cannot pass."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from scrub.crypto import write_key_file
from scrub.ledger import db
from scrub.ledger.service import IdentitySeal, Ledger

POSTGRES = os.environ.get("SCRUB_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


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
