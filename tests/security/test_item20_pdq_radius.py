"""Issue 19, item 20: ``--pdq-radius R`` means "within R bits", inclusive, end to end.

A listed PDQ hash exactly R bits from a row's removes it; one R + 1 bits away does not.
Deliberate bug this catches: the PDQ rule searching with ``radius - 1`` (or ``radius + 1``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.keys import keys_to_hex
from tests.helpers import expect_ok, run_cli


def flip(code: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    out = code.copy()
    for bit in rng.choice(256, bits, replace=False):
        out[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


@pytest.mark.parametrize("radius", [None, 31, 8, 0, 40])
def test_a_pdq_exactly_at_the_radius_matches_and_one_bit_further_does_not(
        tmp_path: Path, radius: int | None) -> None:
    rng = np.random.default_rng(31 if radius is None else radius)
    codes = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"key": [f"{i:05d}" for i in range(400)],
                             "pdq": keys_to_hex(codes).astype(str).tolist(),
                             "pdq_quality": np.full(400, 100, dtype=np.int64)}),
                   data / "part-0.parquet")
    r = 31 if radius is None else radius
    at_radius = [7, 150, 333]
    beyond = [8, 151, 334]
    listed = [flip(codes[i], r, rng) for i in at_radius] + \
             [flip(codes[i], r + 1, rng) for i in beyond]
    # the distances are what they say
    for entry, row in zip(listed, at_radius + beyond, strict=False):
        distance = int(np.unpackbits(entry ^ codes[row]).sum())
        assert distance == (r if row in at_radius else r + 1)
    listing = tmp_path / "pdq.txt"
    listing.write_text("\n".join(keys_to_hex(np.array(listed)).astype(str)) + "\n")
    args = ["--pdq-radius", str(radius)] if radius is not None else []
    result = run_cli("apply", data, tmp_path / "out", "--hashlist", listing, "--type", "pdq",
                    *args, "--workers", "1", "--quiet", "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    kept = set(pq.read_table(tmp_path / "out" / "part-0.parquet").column("key").to_pylist())
    assert {f"{i:05d}" for i in at_radius}.isdisjoint(kept)
    assert {f"{i:05d}" for i in beyond} <= kept
    assert report["rows_removed"] == len(at_radius)
    assert report["removed_by_reason"] == {"perceptual_hash": len(at_radius)}
