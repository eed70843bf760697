"""Issue 19, item 6: shards are found whatever the case of their ``.parquet`` suffix.

A shard named ``PART-1.PARQUET`` (or ``.Parquet``) is scrubbed like any other, not skipped in
silence with its listed rows left in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scrub.dataset import discover_shards
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_ok, run_cli


@pytest.mark.parametrize("suffix", [".PARQUET", ".Parquet", ".parQuet"])
def test_shards_with_an_upper_case_suffix_are_scrubbed(tmp_path: Path, suffix: str) -> None:
    data = generate_dataset(tmp_path / "data", rows=900, shards=3, seed=6, embeddings=False)
    md5 = read_column(data, "md5").to_list()
    listed = [md5[10], md5[450], md5[899]]  # one in each shard
    renamed = data / f"PART-00002{suffix}"
    (data / "part-00002.parquet").rename(renamed)
    listing = tmp_path / "partner.txt"
    listing.write_text("\n".join(listed) + "\n")
    assert renamed.name in [s.name for s in discover_shards(data)]
    result = run_cli("apply", data, tmp_path / "out", "--hashlist", listing, "--workers", "1",
                    "--quiet", "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["shards"] == 3 and report["rows_in"] == 900
    assert report["rows_removed"] == 3
    kept = pq.read_table(tmp_path / "out" / renamed.name).column("md5").to_pylist()
    assert len(kept) == 299 and md5[899] not in kept


def test_hidden_and_marker_files_are_still_skipped(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", rows=100, shards=1, seed=6, embeddings=False)
    shard = data / "part-00000.parquet"
    for name in ("_SUCCESS.PARQUET", ".hidden.PARQUET", "notes.txt"):
        (data / name).write_bytes(shard.read_bytes())
    assert [s.name for s in discover_shards(data)] == ["part-00000.parquet"]
