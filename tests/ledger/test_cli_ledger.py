"""The ledger commands' wiring: ids on stdout, errors as one line with exit 2 or 3."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import expect_ok, run_cli

REQUEST = {"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
           "requester": {"name": "Jane Roe", "email": "jane.roe@example.org"},
           "items": [{"type": "url", "value": "https://example.com/a.jpg"}]}


def invoke(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli(*args, env={"SCRUB_HOME": str(tmp_path / "home"),
                               "SCRUB_KEY_FILE": str(tmp_path / "k.key")})


def test_add_verify_list_and_verify_the_history(tmp_path: Path) -> None:
    assert invoke(tmp_path, "keygen", "--output", str(tmp_path / "k.key")).exit_code == 0
    missing = invoke(tmp_path, "requests", "ls")  # no ledger yet: exit 2, how to create one
    assert missing.exit_code == 2 and "scrub db upgrade" in missing.output
    assert invoke(tmp_path, "db", "upgrade").exit_code == 0
    request = tmp_path / "r.json"
    request.write_text(json.dumps(REQUEST))
    added = invoke(tmp_path, "requests", "add", "--file", str(request))
    assert added.exit_code == 0 and added.stdout.strip() == "1"
    assert invoke(tmp_path, "requests", "verify", "1").exit_code == 0
    again = invoke(tmp_path, "requests", "verify", "1")
    assert again.exit_code == 2 and "request 1 is verified" in again.output
    listed = invoke(tmp_path, "requests", "ls", "--json")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["verified"]
    assert "jane.roe" not in listed.stdout and "Jane Roe" not in listed.stdout
    checked = invoke(tmp_path, "ledger", "verify")
    assert checked.exit_code == 0 and "2 event(s)" in checked.stdout
    exported = json.loads(invoke(tmp_path, "requests", "export", "1").stdout)
    assert exported["requester"]["email"] == "jane.roe@example.org"


def test_bad_requests_exit_2_naming_the_field_and_write_nothing(tmp_path: Path) -> None:
    invoke(tmp_path, "keygen", "--output", str(tmp_path / "k.key"))
    invoke(tmp_path, "db", "upgrade")
    request = tmp_path / "r.json"
    request.write_text(json.dumps({**REQUEST, "items": [{"type": "url", "value": "no url"}]}))
    result = invoke(tmp_path, "requests", "add", "--file", str(request))
    assert result.exit_code == 2 and "items[0]: not a valid url item" in result.output
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps(REQUEST) + "\n" + json.dumps({"kind": "other"}) + "\n")
    result = invoke(tmp_path, "requests", "import", str(batch))
    assert result.exit_code == 2 and "batch.jsonl:2: missing field 'received_at'" in result.output
    assert json.loads(invoke(tmp_path, "requests", "ls", "--json").stdout) == []


def test_batch_import_then_many_ids_move_together_or_not_at_all(tmp_path: Path) -> None:
    invoke(tmp_path, "keygen", "--output", str(tmp_path / "k.key"))
    invoke(tmp_path, "db", "upgrade")
    batch = tmp_path / "batch.jsonl"
    records = [{**REQUEST, "requester": {"name": f"P {n}", "email": f"p{n}@example.org"},
                "items": [{"type": "md5", "value": f"{n:032x}"}]} for n in range(1, 6)]
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))
    imported = invoke(tmp_path, "requests", "import", str(batch))
    assert imported.exit_code == 0 and "5 new" in imported.stdout
    refused = invoke(tmp_path, "requests", "verify", "1", "2", "9")
    assert refused.exit_code == 2 and "no request 9" in refused.output
    listed = json.loads(invoke(tmp_path, "requests", "ls", "--json").stdout)
    assert {r["status"] for r in listed} == {"received"}
    moved = invoke(tmp_path, "requests", "verify", "1", "2", "3")
    assert moved.exit_code == 0 and "3 requests: verify recorded" in moved.stdout
    assert invoke(tmp_path, "requests", "schedule", "1", "2").exit_code == 0
    listed = json.loads(invoke(tmp_path, "requests", "ls", "--json").stdout)
    assert [r["status"] for r in listed] == ["scheduled"] * 2 + ["verified"] + ["received"] * 2
    bad = invoke(tmp_path, "requests", "schedule", "3", "4")
    assert bad.exit_code == 2 and "request 4 is received" in bad.output
    assert json.loads(invoke(tmp_path, "requests", "show", "3", "--json").stdout)["status"] \
        == "verified"
    checked = invoke(tmp_path, "ledger", "verify")
    assert checked.exit_code == 0 and "10 event(s)" in checked.stdout


def test_the_help_of_notes_says_they_are_stored_in_clear() -> None:
    """Red-team review of issue 19, finding 8: the help said notes were "sealed like the
    requester" while the ledger keeps them in clear (SECURITY.md)."""
    result = run_cli("requests", "add", "--help", env={"COLUMNS": "200"}, terminal_width=200)
    expect_ok(result)
    text = " ".join(result.output.replace("│", " ").split())
    assert "stored in clear" in text and "never put a name" in text
    assert "sealed like" not in text
