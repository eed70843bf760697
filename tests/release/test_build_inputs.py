"""``scrub release build`` as a user meets it: the stock policies by name on data without
``punsafe`` (one line naming the rule and the column, and how to build without NSFW rules),
and a ``--from`` rebuild that keeps the previous release's dataset name."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scrub.crypto import load_public_key, write_signing_keypair
from scrub.release.signed import read_signed_manifest
from scrub.synthetic import generate_dataset
from tests.helpers import expect_exit, expect_ok, run_cli
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("inputs"), rows=600, shards=2, embeddings=False)


def test_stock_policies_on_data_without_punsafe_name_the_rule_and_column(
        tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "crawl", rows=300, shards=2, seed=3, embeddings=False)
    for shard in data.glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop(["punsafe"]), shard)
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    result = run_cli(
        "release", "build", str(data), str(tmp_path / "out"), "--policy", "research",
        "--policy", "research-safe", "--signing-key", str(tmp_path / "sign.pem"), "--quiet",
        env={"SCRUB_HOME": str(tmp_path / "home"), "SCRUB_DEBUG": ""})
    expect_exit(result, 2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("scrub: error:")]
    assert len(errors) == 1, result.stderr
    assert "policy research" in errors[0] and "punsafe > 0.95" in errors[0]
    assert "column punsafe" in errors[0] and "part-00000.parquet" in errors[0]
    assert "to build without NSFW rules" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


def test_a_rebuild_from_keeps_the_dataset_name(setup: Setup) -> None:
    first = setup.root / "v1"
    built = setup.build(first, "--dataset", "laion-sample", "--release-id", "v1")
    expect_ok(built)
    again = setup.root / "v2"
    rebuilt = setup.build(again, "--from", str(first), "--release-id", "v2")
    expect_ok(rebuilt)
    key = load_public_key(setup.public)
    for policy in setup.policies:
        assert read_signed_manifest(first / policy.stem, key)["dataset"] == "laion-sample"
        assert read_signed_manifest(again / policy.stem, key)["dataset"] == "laion-sample"
