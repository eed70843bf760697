"""Item 17 (the ledger): what the database would refuse, or Python could not compute, is
refused before the database with one clear line and exit 2, the same on SQLite and PostgreSQL:
an actor over 200 characters or with control characters, a NUL in notes or a reason, a
deadline extension or a receipt time out of range, a request id beyond SQL's integers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.ledger.service import Ledger
from tests.helpers import expect_exit
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    engine,
    key,
    ledger,
    spec,
)

ADD = ["requests", "add", "--kind", "gdpr_erasure", "--name", "N", "--email", "n@example.org",
       "--item", "md5=" + "0" * 32]


def assert_one_clear_line(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    expect_exit(result, 2)
    errors = [line for line in result.output.splitlines() if line.startswith("scrub:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert "internal error" not in result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (ADD + ["--actor", "a" * 201], "--actor is 201 characters long; at most 200"),
    (ADD + ["--actor", "ann\x00"], "--actor holds a control"),
    (ADD + ["--actor", "ann\nbob"], "--actor holds a control"),
    (ADD + ["--notes", "called\x00twice"], "field 'notes' holds a control character (U+0000)"),
    (ADD + ["--received-at", "9999-12-31T00:00:00Z"], "is out of range"),
])
def test_bad_text_is_refused_before_the_database(tmp_path: Path, database: tuple[str, dict],
                                                 ledger: Ledger, args: list[str],
                                                 fragment: str) -> None:
    assert_one_clear_line(cli(tmp_path, database, *args), fragment)
    assert ledger.list() == [] and ledger.verify().events == 0


def test_bad_text_in_a_request_file_and_from_the_environment(tmp_path: Path,
                                                              database: tuple[str, dict],
                                                              ledger: Ledger) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
                                   "requester": {"name": "N", "email": "n@example.org"},
                                   "items": [{"type": "md5", "value": "0" * 32}],
                                   "notes": "nul \u0000 here"}))
    assert_one_clear_line(cli(tmp_path, database, "requests", "add", "--file", str(request)),
                          "request.json: field 'notes' holds a control character")
    assert_one_clear_line(cli(tmp_path, database, *ADD, env={"SCRUB_ACTOR": "x" * 300}),
                          "--actor is 300 characters long")
    assert ledger.list() == []


@pytest.mark.slow
def test_actions_on_requests_check_their_text_and_numbers(tmp_path: Path,
                                                          database: tuple[str, dict],
                                                          ledger: Ledger) -> None:
    request, _ = ledger.add(spec(), "alice")
    events = ledger.verify().events
    cases = [
        (["requests", "verify", str(request), "--actor", "b" * 201], "--actor is 201"),
        (["requests", "verify", str(request), "--reason", "ok\x00"], "--reason holds a control"),
        (["requests", "extend", str(request), "--reason", "wait\x00"],
         "--reason holds a control"),
        (["requests", "extend", str(request), "--reason", "wait", "--days", "1000000000000"],
         "the deadline can move to at most"),
        (["requests", "verify", str(2**40)], f"no request {2**40}"),
        (["requests", "show", str(2**63)], f"no request {2**63}"),
        (["requests", "apply", str(request), "--release", "r\x00"], "--release must be"),
        (["requests", "apply", str(request), "--release", "r" * 201], "--release must be"),
    ]
    for args, fragment in cases:
        assert_one_clear_line(cli(tmp_path, database, *args), fragment)
    assert ledger.verify().events == events  # nothing recorded
    assert ledger.show(request).status == "received"
