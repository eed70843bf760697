"""Item 15: an item given the wrong way round (value where the type goes, or no ``=`` at all)
is refused naming its position, never echoing what was typed: it may be a person's name or a
URL that identifies them. Through ``--item``, a JSON request, a JSONL and a CSV batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import expect_exit, run_cli

NAME = "Jane Roe-Secret"
URL = "https://private.example/jane-roe/at-home.jpg"
REQUEST = {"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
           "requester": {"name": "R", "email": "r@example.org"}}


def invoke(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli(*args, "--db", f"sqlite:///{tmp_path / 'ledger.db'}",
                   env={"SCRUB_HOME": str(tmp_path / "home"), "SCRUB_KEY_FILE": ""})


def assert_refused_quietly(result, where: str) -> None:  # type: ignore[no-untyped-def]
    expect_exit(result, 2)
    assert where in result.output, result.output
    for secret in (NAME, "Jane", "Roe", "private.example", "at-home"):
        assert secret not in result.output


@pytest.mark.parametrize(("items", "where"), [
    ([NAME], "--item number 1: expected TYPE=VALUE"),
    (["url=https://ok.example/a.jpg", URL], "--item number 2: expected TYPE=VALUE"),
    ([f"{URL}=url"], "items[0]: unknown item type"),
    (["md5=" + "0" * 32, f"{NAME}=caption_term"], "items[1]: unknown item type"),
    ([f"{NAME} caption_term"], "--item number 1"),
])
def test_swapped_items_on_the_command_line(tmp_path: Path, items: list[str], where: str) -> None:
    args = ["requests", "add", "--kind", "gdpr_erasure", "--name", "R", "--email",
            "r@example.org"]
    for item in items:
        args += ["--item", item]
    assert_refused_quietly(invoke(tmp_path, *args), where)


def test_swapped_items_in_files(tmp_path: Path) -> None:
    swapped = [{"type": "md5", "value": "0" * 32}, {"type": URL, "value": "url"}]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({**REQUEST, "items": swapped}))
    assert_refused_quietly(invoke(tmp_path, "requests", "add", "--file", str(request)),
                           "request.json: items[1]: unknown item type")
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({**REQUEST, "items": swapped[:1]}) + "\n"
                     + json.dumps({**REQUEST, "items": [{"type": NAME,
                                                         "value": "caption_term"}]}) + "\n")
    assert_refused_quietly(invoke(tmp_path, "requests", "import", str(batch)),
                           "batch.jsonl:2: items[0]: unknown item type")
    table = tmp_path / "batch.csv"
    table.write_text("kind,received_at,name,email,item_type,item_value\n"
                     f"gdpr_erasure,2026-11-01T10:00:00Z,R,r@example.org,md5,{'0' * 32}\n"
                     f"gdpr_erasure,2026-11-02T10:00:00Z,S,s@example.org,{URL},url\n")
    assert_refused_quietly(invoke(tmp_path, "requests", "import", str(table)),
                           "batch.csv:3: items[0]: unknown item type")


def test_items_that_utf8_cannot_encode_are_named_not_a_crash(tmp_path: Path) -> None:
    """A lone surrogate in a JSON item (``"\\ud800"``) is one line naming the item, exit 2."""
    from scrub.crypto import write_key_file

    key = tmp_path / "k.key"
    write_key_file(key)
    db = tmp_path / "l.db"
    assert run_cli("db", "upgrade", "--db", str(db)).exit_code == 0
    for item in ('{"type": "url", "value": "https://a.example/\\ud800.jpg"}',
                 '{"type": "caption_term", "value": "Jane \\ud800"}',
                 '{"type": "domain", "value": "\\ud800.example"}'):
        request = tmp_path / "r.json"
        request.write_text('{"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z", '
                           '"requester": {"name": "N", "email": "n@example.com"}, '
                           f'"items": [{item}]}}')
        result = run_cli("requests", "add", "--file", str(request),
                         "--key-file", str(key), "--db", str(db))
        expect_exit(result, 2)
        assert "items[0]" in result.stderr and "Traceback" not in result.output
        assert "codec" not in result.stderr and "Jane" not in result.stderr
