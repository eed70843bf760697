"""Item 20 (the ledger): every event's recorded link to the one before (``prev_hash``) is
compared with that event's hash. Without that comparison an edited link passes, since each
hash is computed over the previous event's hash as found, and a deleted event is reported as
an altered one instead of a broken link. Mutation check: remove the ``prev_hash`` comparison
in ``scrub/ledger/audit.py`` and these tests fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from scrub.ledger.service import Ledger
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    engine,
    key,
    ledger,
    spec,
    tamper,
)


def history(ledger: Ledger) -> None:
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        request, _ = ledger.add(spec(email), "alice")
        ledger.transition(request, "verify", "alice")


def verify(tmp_path: Path, database: tuple[str, dict]):  # type: ignore[no-untyped-def]
    return cli(tmp_path, database, "ledger", "verify", "--key-file",
               str(tmp_path / "ledger.key"))


@pytest.mark.parametrize(("statements", "first_bad", "message"), [
    (["UPDATE events SET prev_hash = (SELECT hash FROM events WHERE seq = 1) WHERE seq = 4"],
     4, "event 4 does not follow event 3"),
    (["UPDATE events SET prev_hash = '" + "f" * 64 + "' WHERE seq = 1"],
     1, "event 1 does not follow event 0"),
    (["DELETE FROM events WHERE seq = 3", "UPDATE events SET seq = seq - 1 WHERE seq > 3",
      "UPDATE chain_head SET seq = 5"], 3, "event 3 does not follow event 2"),
])
def test_a_broken_link_is_named_as_one(tmp_path: Path, database: tuple[str, dict],
                                       ledger: Ledger, engine: Engine, statements: list[str],
                                       first_bad: int, message: str) -> None:
    history(ledger)
    intact = verify(tmp_path, database)
    assert intact.exit_code == 0 and "3 request(s) match their history" in intact.output
    tamper(engine, *statements)
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == first_bad
    assert message in (report.problem or "")
    result = verify(tmp_path, database)
    assert result.exit_code == 1 and message in result.output
