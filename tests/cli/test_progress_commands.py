"""Progress on stderr for `lists import`, `requests import` and `ledger verify`: a line of
counts without --quiet, nothing with it, and never a list value, URL or identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import expect_ok, run_cli

PLANTED_URL = "https://planted.example.net/secret-photo-4711.jpg"
PLANTED_MD5 = "5f2b1c3d4e5f60718293a4b5c6d7e8f9"
PLANTED_EMAIL = "planted.person@example.org"


def invoke(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli(*args, env={"SCRUB_HOME": str(tmp_path / "home"),
                               "SCRUB_KEY_FILE": str(tmp_path / "k.key")})


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    assert invoke(tmp_path, "keygen", "--output", str(tmp_path / "k.key")).exit_code == 0
    return tmp_path


def _no_planted_value(stderr: str) -> None:
    for value in (PLANTED_URL, "planted.example.net", PLANTED_MD5, PLANTED_EMAIL, "Planted"):
        assert value not in stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_lists_import_shows_progress_unless_quiet(home: Path, quiet: bool) -> None:
    listed = home / "partner.txt"
    listed.write_text(PLANTED_MD5 + "\n" + "".join(f"{n:032x}\n" for n in range(1, 50)))
    result = invoke(home, "lists", "import", str(listed), "--name", "partner", "--source",
                    "org", "--version", "1", *(["--quiet"] if quiet else []))
    expect_ok(result)
    if quiet:
        assert result.stderr == ""
    else:
        assert "import partner@1: 3/3 steps · 50 entries" in result.stderr
    _no_planted_value(result.stderr)


def _requests_file(home: Path) -> Path:
    batch = home / "batch.jsonl"
    records = [{"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
                "requester": {"name": f"Planted {n}", "email": f"{n}.{PLANTED_EMAIL}"},
                "items": [{"type": "url", "value": f"{PLANTED_URL}?n={n}"}]} for n in range(3)]
    batch.write_text("".join(json.dumps(r) + "\n" for r in records))
    return batch


@pytest.mark.parametrize("quiet", [False, True])
def test_requests_import_shows_progress_unless_quiet(home: Path, quiet: bool) -> None:
    assert invoke(home, "db", "upgrade").exit_code == 0
    result = invoke(home, "requests", "import", str(_requests_file(home)),
                    *(["--quiet"] if quiet else []))
    expect_ok(result)
    if quiet:
        assert result.stderr == ""
    else:
        assert "import requests: 2/2 steps · 3 requests" in result.stderr
    _no_planted_value(result.stderr)


@pytest.mark.parametrize("quiet", [False, True])
def test_ledger_verify_shows_progress_unless_quiet(home: Path, quiet: bool) -> None:
    assert invoke(home, "db", "upgrade").exit_code == 0
    assert invoke(home, "requests", "import", str(_requests_file(home)), "-q").exit_code == 0
    result = invoke(home, "ledger", "verify", *(["--quiet"] if quiet else []))
    expect_ok(result)
    if quiet:
        assert result.stderr == ""
    else:  # 3 events, 3 requests and 3 items
        assert "verify ledger: 2/2 passes · 9/9 records" in result.stderr
    _no_planted_value(result.stderr)
