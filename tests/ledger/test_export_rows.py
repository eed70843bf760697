"""`scrub requests export ID` gives, per item, the rows each release variant removed that the
item matches (0 for an item that matched nothing), as the release build recorded them in the
request's 'apply' event; `ledger verify` still passes over those events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.crypto import write_signing_keypair
from scrub.ledger.service import Ledger
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_ok
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    engine,
    key,
    ledger,
    request_policies,
    spec,
)

NOTHING = "1" * 32  # an md5 no row has


@pytest.fixture()
def built(tmp_path: Path, database: tuple[str, dict], ledger: Ledger) -> dict:
    """Two verified requests naming known rows (one row named by both), a release of two
    variants that take requests built from them through the CLI."""
    data = generate_dataset(tmp_path / "data", rows=300, shards=2, seed=5, embeddings=False)
    urls = read_column(data, "URL")
    first, _ = ledger.add(spec("a@example.org", [
        {"type": "url", "value": urls[9]}, {"type": "url", "value": urls[200]},
        {"type": "md5", "value": NOTHING}]), "alice")
    second, _ = ledger.add(spec("b@example.org", [{"type": "url", "value": urls[9]},
                                                  {"type": "url", "value": urls[40]}]), "bob")
    ledger.transition_many([first, second], "verify", "alice")
    policies = request_policies(tmp_path, "research", "strict")
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    result = cli(tmp_path, database, "release", "build", str(data), str(tmp_path / "out"),
                 *policies, "--signing-key", str(tmp_path / "sign.pem"), "--workers", "1",
                 "--quiet", "--release-id", "r-1")
    expect_ok(result)
    return {"urls": urls, "first": first, "second": second}


def exported(tmp_path: Path, database: tuple[str, dict], request: int) -> list[list]:
    """Each item's (release, variant, rows) entries, in the request's order, from `scrub
    requests export` (values are shown in canonical form, not as the request spelt them)."""
    result = cli(tmp_path, database, "requests", "export", str(request))
    expect_ok(result)
    return [sorted((e["release"], e["variant"], e["rows"]) for e in item["rows_removed"])
            for item in json.loads(result.stdout)["items"]]


def test_export_gives_rows_removed_per_item_release_and_variant(
        tmp_path: Path, database: tuple[str, dict], built: dict) -> None:
    urls = built["urls"]

    def rows_of(url: str) -> int:
        return sum(1 for u in urls if u == url)

    def entries(count: int) -> list:
        return [("r-1", "research", count), ("r-1", "strict", count)]

    assert rows_of(urls[9]) >= 1 and rows_of(urls[200]) >= 1
    assert exported(tmp_path, database, built["first"]) == [
        entries(rows_of(urls[9])), entries(rows_of(urls[200])), entries(0)]
    # the row both requests name counts for each
    assert exported(tmp_path, database, built["second"]) == [
        entries(rows_of(urls[9])), entries(rows_of(urls[40]))]


def test_ledger_verify_passes_over_the_recorded_counts(
        tmp_path: Path, database: tuple[str, dict], built: dict) -> None:
    result = cli(tmp_path, database, "ledger", "verify", "--quiet")
    expect_ok(result)
    assert "2 request(s) match their history" in result.stdout
