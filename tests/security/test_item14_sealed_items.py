"""Item 14: a request's items (a caption term is a person's name, a URL can identify them) are
sealed like identities: nowhere in the database in clear, nor as an unkeyed digest someone could
test guesses against; looked up by keyed digest; printed only on request, with the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import Engine

from scrub.ledger.service import Ledger
from tests.helpers import expect_ok
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    engine,
    key,
    ledger,
    spec,
    text_of_database,
)

ITEMS = [{"type": "url", "value": "https://zq-studio.com/private/zebulon-at-home.jpg"},
         {"type": "caption_term", "value": "Zebulon Quartermain"},
         {"type": "domain", "value": "zq-studio.com"}]
CANONICAL = [("url", "https://zq-studio.com/private/zebulon-at-home.jpg"),
             ("caption_term", "zebulon quartermain"), ("domain", "zq-studio.com")]
SECRETS = ("zebulon", "Zebulon", "quartermain", "zq-studio")


def test_items_are_nowhere_in_the_database_in_clear_or_as_a_plain_digest(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, engine: Engine) -> None:
    request, _ = ledger.add(spec("zq@example.org", ITEMS), "alice")
    ledger.transition(request, "verify", "alice")
    stored = text_of_database(engine)
    for secret in SECRETS:
        assert secret not in stored
    for type_name, value in CANONICAL:  # what a dictionary attack on the events would try
        for text in (f"{type_name}\x00{value}", value):
            assert hashlib.sha256(text.encode()).hexdigest() not in stored
            assert hashlib.md5(text.encode()).hexdigest() not in stored
    if engine.dialect.name == "sqlite":
        engine.dispose()
        raw = Path(engine.url.database).read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in raw
    # the releases still get the values (with the key)
    assert sorted((t, v) for _, _, t, v in ledger.enforced_items()) == sorted(CANONICAL)


def test_items_are_printed_only_on_request_with_the_key(tmp_path: Path,
                                                        database: tuple[str, dict],
                                                        ledger: Ledger) -> None:
    request, _ = ledger.add(spec("zq@example.org", ITEMS), "alice")
    for args in (["requests", "show", str(request)],
                 ["requests", "show", str(request), "--json"],
                 ["requests", "ls", "--json"], ["requests", "ls"]):
        result = cli(tmp_path, database, *args)
        expect_ok(result)
        for secret in SECRETS:
            assert secret not in result.output, args
    shown = cli(tmp_path, database, "requests", "show", str(request))
    assert "item caption_term: (sealed" in shown.output
    assert json.loads(cli(tmp_path, database, "requests", "show", str(request), "--json")
                      .stdout)["items"][0]["value"] is None
    keyless = cli(tmp_path, database, "requests", "show", str(request), "--items", key=False)
    assert keyless.exit_code == 2 and "key" in keyless.output
    opened = cli(tmp_path, database, "requests", "show", str(request), "--items")
    assert opened.exit_code == 0
    assert "item caption_term: zebulon quartermain" in opened.output
    exported = json.loads(cli(tmp_path, database, "requests", "export", str(request)).stdout)
    assert sorted((i["type"], i["value"]) for i in exported["items"]) == sorted(CANONICAL)


def test_adding_prints_no_item_and_repeats_join_by_keyed_digest(tmp_path: Path,
                                                                database: tuple[str, dict],
                                                                ledger: Ledger) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
                                   "requester": {"name": "Z Q", "email": "zq@example.org"},
                                   "items": ITEMS}))
    first = cli(tmp_path, database, "requests", "add", "--file", str(request), "--json")
    expect_ok(first)
    for secret in SECRETS:
        assert secret not in first.output
    again = tmp_path / "again.json"
    again.write_text(json.dumps({"kind": "gdpr_erasure", "received_at": "2026-11-02T10:00:00Z",
                                 "requester": {"name": "Z Q", "email": "ZQ@example.org"},
                                 "items": [ITEMS[1], {"type": "md5", "value": "a" * 32}]}))
    joined = cli(tmp_path, database, "requests", "add", "--file", str(again))
    assert joined.exit_code == 0 and joined.stdout.strip() == str(json.loads(first.stdout)["id"])
    assert "a repeat of request" in joined.output
    assert len(ledger.show(int(joined.stdout), items=True).items) == 4
    assert cli(tmp_path, database, "ledger", "verify").exit_code == 0
