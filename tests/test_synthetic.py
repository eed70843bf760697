"""The sample generator: deterministic, LAION-shaped, embeddings row-aligned."""

from __future__ import annotations

from pathlib import Path

import mmh3
import numpy as np
import polars as pl
import pyarrow.parquet as pq

from scrub.synthetic import generate_dataset


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", rows=3000, shards=2, seed=4)
    b = generate_dataset(tmp_path / "b", rows=3000, shards=2, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 5  # 2 shards, 2 embedding files, sample.json
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = generate_dataset(tmp_path / "c", rows=3000, shards=2, seed=5, embeddings=False)
    assert (c / "part-00000.parquet").read_bytes() != (a / "part-00000.parquet").read_bytes()


def test_a_finished_sample_is_reused(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "s", rows=1000, shards=1, seed=1, embeddings=False)
    mtime = (out / "part-00000.parquet").stat().st_mtime_ns
    generate_dataset(tmp_path / "s", rows=1000, shards=1, seed=1, embeddings=False)
    assert (out / "part-00000.parquet").stat().st_mtime_ns == mtime


def test_columns_and_laion_hash(sample_dataset: Path) -> None:
    frame = pl.read_parquet(sorted(sample_dataset.glob("*.parquet"))[0])
    assert frame.columns == ["URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "punsafe", "hash",
                             "pwatermark", "key", "md5", "sha256", "pdq"]
    for row in frame.head(200).iter_rows(named=True):
        assert row["hash"] == mmh3.hash64(row["URL"] + row["TEXT"])[0]
    assert frame["key"].n_unique() == frame.height
    assert frame["md5"].str.contains("^[0-9a-f]{32}$").all()
    assert frame["sha256"].str.len_bytes().eq(64).all()
    assert frame["punsafe"].is_between(0, 1).all()
    assert (frame["punsafe"] > 0.95).sum() > 0  # a tail of unsafe rows exists


def test_urls_look_like_laion(sample_dataset: Path) -> None:
    urls = pl.concat([pl.read_parquet(p, columns=["URL"])["URL"]
                      for p in sorted(sample_dataset.glob("*.parquet"))])
    hosts = urls.str.extract(r"^https?://([^/?#]+)")
    assert hosts.n_unique() > 300
    assert urls.str.contains("?", literal=True).mean() > 0.1
    assert urls.str.contains("%", literal=True).any()
    assert hosts.str.contains(r"[^\x00-\x7f]").any()  # IDN hosts
    assert hosts.str.contains(r"\.co\.uk$").any()
    assert hosts.str.contains(r":\d+$").any()
    assert urls.n_unique() == len(urls)


def test_embeddings_are_row_aligned_float16_unit_vectors(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "e", rows=2500, shards=3, seed=2)
    for i, shard in enumerate(sorted(out.glob("*.parquet"))):
        emb = np.load(out / "img_emb" / f"img_emb_{i}.npy", allow_pickle=False)
        assert emb.dtype == np.float16 and emb.shape == (pq.read_metadata(shard).num_rows, 768)
        norms = np.linalg.norm(emb.astype(np.float32), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-2)
