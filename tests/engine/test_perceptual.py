"""Perceptual rules in apply: PDQ near-duplicates within the radius, the quality floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.apply import apply
from scrub.engine.hamming import brute_force
from scrub.engine.plan import MatchOptions, plan_from_hashlists
from scrub.keys import hex_to_keys, keys_to_hex
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import read_column


def flipped(rng: np.random.Generator, keys: np.ndarray, max_bits: int) -> np.ndarray:
    out = keys.copy()
    for row in out:
        for bit in rng.choice(256, int(rng.integers(0, max_bits + 1)), replace=False):
            row[bit // 8] ^= 1 << (bit % 8)
    return out


def run(dataset: Path, output: Path, listing: Path, options: MatchOptions | None = None):
    return apply(lambda: plan_from_hashlists([read_hashlist(listing, type_name="pdq")],
                                             options=options),
                 dataset, output, workers=1, progress=False)


@pytest.mark.slow
def test_pdq_near_duplicates_within_the_radius_are_removed(sample_dataset: Path,
                                                           tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    column = read_column(sample_dataset, "pdq")
    codes, _ = hex_to_keys(column.to_arrow(), 32)
    picked = rng.choice(len(codes), 40, replace=False)
    listed = np.concatenate([flipped(rng, codes[picked], 31),
                             rng.integers(0, 256, (500, 32), dtype=np.uint8)])
    listing = tmp_path / "pdq.txt"
    listing.write_text("\n".join(keys_to_hex(listed).astype(str)) + "\n")
    for radius in (31, 12):
        result = run(sample_dataset, tmp_path / f"out{radius}", listing,
                     MatchOptions(pdq_radius=radius))
        expected = set(brute_force(listed, codes, radius).query.tolist())
        kept = pl.read_parquet(sorted((tmp_path / f"out{radius}").glob("*.parquet")))["pdq"]
        removed = set(column.to_list()) - set(kept.to_list())
        assert removed == {column[i] for i in expected}
        assert result.report["removed_by_reason"] == {"perceptual_hash": len(expected)}
        if radius == 31:
            assert len(expected) >= 40


def test_rows_below_the_quality_floor_never_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    source = tmp_path / "data"
    source.mkdir()
    pq.write_table(pa.table({"pdq": keys_to_hex(codes).astype(str).tolist(),
                             "pdq_quality": [100, 49, 50, None, 80, 10]}),
                   source / "part-0.parquet")
    listing = tmp_path / "pdq.txt"
    listing.write_text("\n".join(keys_to_hex(codes).astype(str)) + "\n")
    result = run(source, tmp_path / "out", listing)
    assert result.report["rows_removed"] == 3  # quality 100, 50 and 80
    kept = pq.read_table(tmp_path / "out" / "part-0.parquet").column("pdq_quality").to_pylist()
    assert kept == [49, None, 10]
