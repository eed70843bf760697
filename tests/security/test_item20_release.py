"""Item 20 (releases): tests that catch two deliberate bugs.

- ``release verify --store/--db`` always reporting zero matching rows: a release is built, then
  a request (or a list under the label the manifest names) matching a kept row appears, and
  verify must report that row (exit 3).
- The removal list left unshuffled (or sorted): its order must be unrelated to the input order
  and to the order of its own values, a function of the release's key (the same job gives the
  same bytes; another key another order), as SECURITY.md and the code promise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import Result

from scrub.crypto import load_key, write_key_file, write_signing_keypair
from scrub.layout import companion
from scrub.ledger import db
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from scrub.lists.store import ListStore
from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup, nsfw_policy


def add_verified(url: str, key: Path, address: str, email: str) -> tuple[Ledger, int]:
    ledger = Ledger(db.make_engine(url), seal=IdentitySeal(load_key(key)))
    request, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-20T10:00:00Z",
        "requester": {"name": email.split("@")[0], "email": email},
        "items": [{"type": "url", "value": address}]}, where="r"), "alice")
    ledger.transition(request, "verify", "alice")
    return ledger, request


# --------------------------------------------------------------------------- verify rematches


@pytest.fixture(scope="module")
def matched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A release removing a sensitive list's row, a verified request's row and punsafe > 0.5."""
    root = tmp_path_factory.mktemp("item20-verify")
    setup = make_setup(root, embeddings=False)
    shards = sorted(setup.data.glob("*.parquet"))
    first = pl.read_parquet(shards[0])
    key = write_key_file(root / "data.key")
    (root / "partner.txt").write_text(first["md5"][9] + "\n" + f"{7:032x}\n")
    ListStore(root / "store").import_list(root / "partner.txt", name="partner-md5",
                                          source="partner", version="1", key=key)
    url = f"sqlite:///{root / 'ledger.db'}"
    db.upgrade(db.make_engine(url))
    add_verified(url, root / "data.key", first["URL"][5], "ada@example.org")
    setup.policies = [nsfw_policy(root, "research", 0.5, "[lists]", 'names = ["partner-md5"]',
                                  "[ledger]", "requests = true")]
    out = root / "out"
    result = setup.build(out, "--store", str(root / "store"), "--key-file",
                         str(root / "data.key"), "--db", url, "--no-ledger-update")
    expect_ok(result)
    kept = pl.read_parquet(out / "research" / shards[2].name)
    return {"setup": setup, "release": out / "research", "db": url, "kept": kept,
            "store": root / "store", "key": root / "data.key"}


def rematch(matched: dict, *extra: str) -> Result:
    setup: Setup = matched["setup"]
    return setup.verify(matched["release"], "--key-file", str(matched["key"]), *extra)


def test_verify_reports_a_kept_row_a_new_request_names(matched: dict) -> None:
    clean = rematch(matched, "--store", str(matched["store"]), "--db", matched["db"])
    expect_ok(clean)
    assert "no row matches" in clean.stdout
    # a request verified after the release, for a row it kept (spelled otherwise)
    kept_url = matched["kept"]["URL"][11]
    respelled = kept_url.replace("https://", "HTTPS://", 1).replace("http://", "HTTP://", 1)
    ledger, request = add_verified(matched["db"], matched["key"], respelled, "bo@example.org")
    try:  # a request newer than the release: not the release's fault (exit 4), counted
        found = rematch(matched, "--db", matched["db"])
        expect_exit(found, 4)
        assert "predates 1 verified request(s) in the ledger (1 of its row(s) match them)" \
            in found.output
        as_json = rematch(matched, "--db", matched["db"], "--json")
        assert as_json.exit_code == 4
        assert json.loads(as_json.stdout)["newer_request_matches"] == 1
    finally:
        ledger.transition(request, "withdraw", "alice")
    again = rematch(matched, "--db", matched["db"])
    expect_ok(again)


def test_verify_reports_kept_rows_a_listed_version_holds(matched: dict, tmp_path: Path) -> None:
    """The store given holds, under the label the manifest names, the md5s of two kept rows."""
    store = ListStore(tmp_path / "store")
    listed = matched["kept"]["md5"].gather([4, 30]).to_list()
    (tmp_path / "partner.txt").write_text("\n".join(listed) + "\n")
    store.import_list(tmp_path / "partner.txt", name="partner-md5", source="partner",
                      version="1", key=load_key(matched["key"]))
    found = rematch(matched, "--store", str(tmp_path / "store"))
    expect_exit(found, 3)
    assert "2 row(s) match the lists or requests" in found.output


# --------------------------------------------------------------------------- shuffled removals


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item20-shuffle"), embeddings=False)


def removal_order(setup: Setup, variant: Path) -> np.ndarray:
    """The input row (global number) of each removal list row, in the list's order, matched by
    the keyed md5 (the generated md5s are distinct)."""
    key = json.loads((companion(variant) / "manifest.json").read_text())["removals"]["key"]
    md5 = pl.concat([pl.read_parquet(p, columns=["md5"])
                     for p in sorted(setup.data.glob("*.parquet"))])["md5"].to_list()
    row_of = {hmac.new(key.encode(), m.lower().encode(), hashlib.sha256).hexdigest(): i
              for i, m in enumerate(md5)}
    removals = pl.read_parquet(companion(variant) / "removals.parquet")
    return np.array([row_of[h] for h in removals["md5"].to_list()])


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def ascending_share(values: list) -> float:  # type: ignore[type-arg]
    return sum(x < y for x, y in zip(values, values[1:], strict=False)) / (len(values) - 1)


def test_the_removal_list_is_shuffled_by_the_release_key(shuffled: Setup,
                                                         tmp_path: Path) -> None:
    first = shuffled.build(tmp_path / "a", "--release-id", "r")
    expect_ok(first)
    variant = tmp_path / "a" / "safe"
    order = removal_order(shuffled, variant)
    keys = pl.concat([pl.read_parquet(p, columns=["key"])
                      for p in sorted(shuffled.data.glob("*.parquet"))])["key"]
    kept = pl.concat([pl.read_parquet(p, columns=["key"])
                      for p in sorted(variant.glob("part-*.parquet"))])["key"]
    removed = np.flatnonzero((~keys.is_in(kept.implode())).to_numpy())
    assert len(order) == len(removed) > 300 and set(order) == set(removed.tolist())
    # A random order: rank correlation with the input order ~ N(0, 1/sqrt(n)) (n > 300: a
    # bound of 0.2 is > 3.4 sigma), about half of the neighbours ascending (sd ~ 0.02)
    assert abs(rank_correlation(np.arange(len(order)), order)) < 0.2
    assert 0.4 < ascending_share(order.tolist()) < 0.6
    removals = pl.read_parquet(companion(variant) / "removals.parquet")
    for column in ("url", "md5", "sha256"):  # not sorted by its values either
        assert 0.4 < ascending_share(removals[column].to_list()) < 0.6, column
    # the same job gives the same bytes (a resumed or repeated build)
    again = shuffled.build(tmp_path / "b", "--release-id", "r")
    expect_ok(again)
    assert ((tmp_path / "b" / "safe.scrub" / "removals.parquet").read_bytes()
            == (companion(variant) / "removals.parquet").read_bytes())
    # another signing key, another removal key: another order of the same rows
    write_signing_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    other = shuffled.build(tmp_path / "c", "--release-id", "r", "--signing-key",
                           str(tmp_path / "other.pem"))
    expect_ok(other)
    second = removal_order(shuffled, tmp_path / "c" / "safe")
    assert set(second) == set(order)
    position = {row: i for i, row in enumerate(second)}
    assert abs(rank_correlation(np.arange(len(order)),
                                np.array([position[r] for r in order]))) < 0.2


def test_the_removal_list_order_is_not_the_shard_order(shuffled: Setup, tmp_path: Path) -> None:
    """Rows of one shard are spread over the whole list, not gathered in a block."""
    result = shuffled.build(tmp_path / "a")
    expect_ok(result)
    order = removal_order(shuffled, tmp_path / "a" / "safe")
    sizes = [pl.read_parquet(p, columns=["key"]).height
             for p in sorted(shuffled.data.glob("*.parquet"))]
    shard = np.searchsorted(np.cumsum(sizes), order, side="right")
    runs = 1 + int((shard[1:] != shard[:-1]).sum())
    # three shards in random order: ~2n/3 runs; gathered by shard: 3
    assert runs > len(order) / 2
