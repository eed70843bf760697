"""What one ``scrub release build`` of the planted dataset publishes: Re-LAION thresholds on
planted rows, variants nested and row-aligned, signed manifests that catch tampering, audits
without sensitive values, removal lists that reproduce the removals on a copy, and the ledger's
verified request marked applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.layout import companion
from scrub.ledger.service import Ledger
from scrub.urls import canonical_url
from tests.helpers import expect_ok, run_cli
from tests.release.planted import built, expected_gone, kept_keys, setup  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_variants_keep_exactly_the_expected_rows_in_order(setup: dict, built: Path) -> None:
    keys = setup["whole"]["key"].to_list()
    for variant in ("research", "research-safe"):
        gone = expected_gone(setup, variant)
        assert kept_keys(built / variant) == [k for i, k in enumerate(keys) if i not in gone]
        for shard in sorted(setup["data"].glob("*.parquet")):
            assert pq.read_schema(built / variant / shard.name).equals(pq.read_schema(shard))
    safe, research = set(kept_keys(built / "research-safe")), set(kept_keys(built / "research"))
    assert safe < research < set(keys)


def test_embeddings_stay_row_aligned(setup: dict, built: Path) -> None:
    for variant in ("research", "research-safe"):
        for index, shard in enumerate(sorted(setup["data"].glob("*.parquet"))):
            source_keys = pl.read_parquet(shard)["key"].to_list()
            kept = pl.read_parquet(built / variant / shard.name)["key"].to_list()
            rows = [source_keys.index(k) for k in kept]
            original = np.load(setup["data"] / "img_emb" / f"img_emb_{index}.npy")
            filtered = np.load(companion(built / variant) / "img_emb" / f"img_emb_{index}.npy")
            assert np.array_equal(filtered, original[rows])


def test_manifests_verify_and_catch_tampering(setup: dict, built: Path, tmp_path: Path) -> None:
    root = setup["root"]
    ok = run_cli("release", "verify", str(built / "research"), "--pubkey",
                 str(root / "sign.pub"), "--store", str(setup["store"]),
                 "--key-file", str(setup["key"]), "--db", setup["db"])
    expect_ok(ok)
    manifest = json.loads((companion(built / "research") / "manifest.json").read_text())
    assert manifest["release_id"] == "r-test" and manifest["variant"] == "research"
    assert {e["name"] for e in manifest["lists"]} == {"partner-md5", "optout"}
    assert manifest["ledger"]["events"] == 3 and len(manifest["ledger"]["head"]) == 64
    assert len(manifest["input_shards"]) == 4 and len(manifest["shards"]) == 4
    for case in ("shard", "rows", "signature", "state"):
        copy = tmp_path / case / "research"
        for folder in (copy, companion(copy)):
            shutil.copytree(built / folder.name, folder)
        shard = copy / "part-00001.parquet"
        if case == "shard":
            table = pq.read_table(shard)
            pq.write_table(table.set_column(1, "TEXT", pa.array(["x"] * table.num_rows)), shard)
        elif case == "rows":
            pq.write_table(pq.read_table(shard).slice(1), shard)
        elif case == "state":  # build state is never part of a release
            (copy / "_state").mkdir()
            (copy / "_state" / "part-00001.json").write_text("{}\n")
        else:
            body = json.loads((companion(copy) / "manifest.json").read_text())
            body["totals"]["removed"] += 1
            (companion(copy) / "manifest.json").write_text(json.dumps(body, indent=2,
                                                                      sort_keys=True))
        bad = run_cli("release", "verify", str(copy), "--pubkey",
                      str(root / "sign.pub"))
        assert bad.exit_code == 3, (case, bad.output)
        expected = {"shard": "part-00001.parquet: sha256 differs",
                    "rows": "part-00001.parquet", "signature": "signature does not verify",
                    "state": "_state: a folder the manifest does not list"}
        assert expected[case] in bad.output


def test_reports_hold_no_sensitive_value(setup: dict, built: Path) -> None:
    audit = json.loads((companion(built / "research-safe") / "audit.json").read_text())
    assert audit["removed"] == len(expected_gone(setup, "research-safe"))
    assert audit["removed_by_reason"]["nsfw"] == 15 + 15 + 15 + 10
    assert "ledger requests" in audit["removed_by_source"]
    blobs = [(companion(built / v) / name).read_bytes() for v in ("research", "research-safe")
             for name in ("audit.json", "audit.html", "manifest.json", "removals.parquet")]
    html = (companion(built / "research") / "audit.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    secrets = setup["md5s"] + setup["urls"] + ["Ada Requester", "ada@example.org"]
    secrets += [canonical_url(u) for u in setup["urls"]]
    for secret in secrets:
        assert all(secret.encode() not in blob for blob in blobs), secret


def test_the_removal_list_reproduces_the_removals_on_a_copy(setup: dict, built: Path,
                                                             tmp_path: Path) -> None:
    for variant in ("research", "research-safe"):
        out = tmp_path / variant
        result = run_cli("apply", str(setup["data"]), str(out), "--hashlist",
                         str(companion(built / variant) / "removals.parquet"),
                         "--workers",
                         "1", "--quiet")
        expect_ok(result)
        assert kept_keys(out) == kept_keys(built / variant)


def test_the_ledger_marks_the_verified_request_applied(setup: dict, built: Path) -> None:
    from scrub.ledger.db import make_engine

    ledger = Ledger(make_engine(setup["db"]))
    assert ledger.show(setup["first"]).status == "applied"
    assert ledger.show(setup["first"]).releases == ["r-test"]
    assert ledger.show(setup["pending"]).status == "received"
