"""Ledger tests run on SQLite and on PostgreSQL (127.0.0.1:5432, database ``test``, or
``SCRUB_TEST_POSTGRES_URL``). PostgreSQL tests fail when the server is unreachable: they never
skip, so a CI run without the database cannot pass. The fixtures are the security tests' own
(:mod:`tests.security.ledger_setup`), one definition for both."""

from __future__ import annotations

from tests.security.ledger_setup import POSTGRES, database, engine, key, ledger  # noqa: F401
