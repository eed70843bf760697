"""What ``release build`` and ``release verify`` tell a user (issue 21, section 4): removals per
reason, rows removed for several reasons and the shards reused or built; a release that predates
verified requests is told apart (exit 4) from a release that is wrong (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from scrub.crypto import load_key, write_key_file
from scrub.layout import companion
from scrub.ledger import db
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup, nsfw_policy


def add_verified(url: str, key: Path, address: str, email: str) -> int:
    ledger = Ledger(db.make_engine(url), seal=IdentitySeal(load_key(key)))
    request, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-20T10:00:00Z",
        "requester": {"name": email.split("@")[0], "email": email},
        "items": [{"type": "url", "value": address}]}, where="r"), "alice")
    ledger.transition(request, "verify", "alice")
    return request


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A release applying one verified request (for a row punsafe > 0.5 also removes, so it is
    removed for two reasons) and punsafe > 0.5."""
    root = tmp_path_factory.mktemp("release-reports")
    setup = make_setup(root, embeddings=False)
    first = pl.read_parquet(sorted(setup.data.glob("*.parquet"))[0])
    unsafe = first.filter(pl.col("punsafe") > 0.5)["URL"][0]
    write_key_file(root / "data.key")
    url = f"sqlite:///{root / 'ledger.db'}"
    db.upgrade(db.make_engine(url))
    add_verified(url, root / "data.key", unsafe, "ada@example.org")
    setup.policies = [nsfw_policy(root, "research", 0.5, "[ledger]", "requests = true")]
    result = setup.build(root / "out", "--key-file", str(root / "data.key"), "--db", url)
    expect_ok(result)
    return {"setup": setup, "root": root, "db": url, "summary": json.loads(result.stdout)}


def test_build_json_gives_removals_per_reason_and_rows_of_several_reasons(built: dict) -> None:
    variant = built["summary"]["variants"]["research"]
    assert variant["removed_by_reason"]["gdpr_erasure"] == 1
    assert variant["rows_with_several_reasons"] == 1
    assert variant["removed"] == sum(variant["removed_by_reason"].values()) - 1
    assert (variant["shards_built"], variant["shards_reused"]) == (3, 0)
    audit = json.loads((companion(Path(variant["folder"])) / "audit.json").read_text())
    assert audit["rows_with_several_reasons"] == 1


def test_build_json_counts_the_shards_a_rebuild_reused(built: dict) -> None:
    setup: Setup = built["setup"]
    root = built["root"]
    result = setup.build(root / "again", "--key-file", str(root / "data.key"), "--db",
                         built["db"], "--from", str(root / "out"))
    expect_ok(result)
    variant = json.loads(result.stdout)["variants"]["research"]
    assert (variant["shards_built"], variant["shards_reused"]) == (0, 3)


def test_verify_says_a_release_predates_newer_requests_with_exit_4(built: dict) -> None:
    setup: Setup = built["setup"]
    root = built["root"]
    args = ("--key-file", str(root / "data.key"), "--db", built["db"])
    clean = setup.verify(root / "out", *args)
    expect_ok(clean)
    add_verified(built["db"], root / "data.key", "https://nowhere.example/none.jpg",
                 "bo@example.org")
    later = setup.verify(root / "out", *args)
    expect_exit(later, 4)
    assert "predates 1 verified request(s) in the ledger (0 of its row(s) match them)" \
        in later.stderr
    assert "fails verification" not in later.output
