"""Every output folder reads as exactly its rows in the clients users read data with.

apply's OUTPUT and each release variant folder are read with DuckDB
(``read_parquet('DIR/*.parquet')``), polars (``scan_parquet`` of the glob and of the folder),
``pyarrow.dataset`` (default options) and Hugging Face ``datasets`` (offline): each gives the
rows the report or the signed manifest counts, with the keys of its shards, in order. Reports,
manifests, removal lists, job state and embeddings lie in the companion folder ``DIR.scrub``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import expect_exit, expect_ok, run_cli, write_planted_lists
from tests.security.release_setup import Setup, make_setup

READERS = ("duckdb", "polars glob", "polars folder", "pyarrow.dataset", "datasets")


def beside(folder: Path) -> Path:
    """The documented companion folder of an output folder: ``DIR.scrub`` beside ``DIR``."""
    return folder.with_name(folder.name + ".scrub")


@pytest.fixture(scope="module")
def hf_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Hugging Face ``datasets`` offline, with its home and cache in a temporary folder."""
    home = tmp_path_factory.mktemp("hf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(home))
        yield home


def read_keys(folder: Path, cache: Path) -> dict[str, list[str]]:
    """The ``key`` column of ``folder`` as each reader reads it, in the order it gives."""
    import datasets
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    datasets.disable_progress_bars()
    with duckdb.connect() as con:
        rows = con.execute("SELECT key FROM read_parquet(?)", [f"{folder}/*.parquet"]).fetchall()
    loaded = datasets.load_dataset("parquet", data_files=f"{folder}/*.parquet", split="train",
                                   cache_dir=str(cache / folder.name))
    return {
        "duckdb": [row[0] for row in rows],
        "polars glob": pl.scan_parquet(f"{folder}/*.parquet").select("key").collect()
        ["key"].to_list(),
        "polars folder": pl.scan_parquet(f"{folder}/").select("key").collect()["key"].to_list(),
        "pyarrow.dataset": ds.dataset(str(folder)).to_table(columns=["key"])["key"].to_pylist(),
        "datasets": list(loaded["key"]),
    }


def shard_keys(folder: Path, shards: list[dict]) -> list[str]:
    """The keys of the named shards, in order, each checked against its counted rows."""
    keys: list[str] = []
    for shard in shards:
        table = pq.read_table(folder / shard["name"], columns=["key"])
        assert table.num_rows == shard["rows"], shard["name"]
        keys += table["key"].to_pylist()
    return keys


def assert_reads_as_manifest(variant: Path, cache: Path) -> None:
    """Every reader gives the variant's signed manifest: its shards' rows, in order."""
    manifest = json.loads((beside(variant) / "manifest.json").read_text())
    expected = shard_keys(variant, manifest["shards"])
    assert len(expected) == manifest["totals"]["rows_out"] > 0
    found = read_keys(variant, cache)
    for reader in READERS:
        assert found[reader] == expected, (variant.name, reader)


def assert_reads_as_report(output: Path, cache: Path) -> None:
    """Every reader gives the apply report's rows: each shard's rows out, in order."""
    report = json.loads((beside(output) / "apply-report.json").read_text())
    shards = [{"name": s["shard"], "rows": s["rows_out"]} for s in report["per_shard"]]
    expected = shard_keys(output, shards)
    assert len(expected) == report["rows_out"] > 0
    found = read_keys(output, cache)
    for reader in READERS:
        assert found[reader] == expected, (output.name, reader)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Setup, Path]:
    """A release of two variants with embeddings (``open``, ``safe``), as release build
    wrote it."""
    setup = make_setup(tmp_path_factory.mktemp("readers"))
    out = setup.root / "out"
    built = setup.build(out, "--release-id", "r-readers")
    expect_ok(built)
    return setup, out


@pytest.mark.slow
def test_apply_output_reads_as_exactly_its_rows_in_every_reader(
        sample_dataset: Path, planted_values, tmp_path: Path, hf_offline: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    output = tmp_path / "cleaned"
    result = run_cli("apply", str(sample_dataset), str(output), "--workers", "1",
                     "--quiet", *[a for p in lists for a in ("--hashlist", str(p))])
    expect_ok(result)
    assert sorted(p.name for p in output.iterdir()) == sorted(
        p.name for p in sample_dataset.glob("*.parquet"))  # its shards, nothing else
    assert_reads_as_report(output, tmp_path / "hf-cache")


def test_each_release_variant_reads_as_exactly_its_rows_in_every_reader(
        release: tuple[Setup, Path], tmp_path: Path, hf_offline: Path) -> None:
    setup, out = release
    for name in ("open", "safe"):
        variant = out / name
        assert sorted(p.name for p in variant.iterdir()) == sorted(
            p.name for p in setup.data.glob("*.parquet"))
        # the embeddings stay in clip-retrieval's layout, beside the shards' folder
        assert sorted(p.name for p in (beside(variant) / "img_emb").iterdir()) == [
            f"img_emb_{i}.npy" for i in range(3)]
        assert_reads_as_manifest(variant, tmp_path / "hf-cache")


def test_the_demo_outputs_read_as_their_rows_in_every_reader(tmp_path: Path,
                                                             hf_offline: Path) -> None:
    work = tmp_path / "demo"
    result = run_cli("demo", "--workdir", str(work), "--rows", "3000",
                     "--shards", "3", "--workers", "1", "--quiet")
    expect_ok(result)
    assert f"report:       {beside(work / 'scrubbed') / 'apply-report.json'}" in result.stdout
    assert f"{beside(work / 'release' / 'research') / 'audit.html'}" in result.stdout
    assert f"scrub release verify {work / 'release'} --pubkey" in result.stdout
    assert_reads_as_report(work / "scrubbed", tmp_path / "hf-cache")
    for name in ("research", "research-safe"):
        assert_reads_as_manifest(work / "release" / name, tmp_path / "hf-cache")
    verified = run_cli("release", "verify", str(work / "release"), "--pubkey",
                       str(work / "signing.pub"))
    expect_ok(verified)


def _apply(source: Path, output: Path, lists: list[Path], *extra: str):
    return run_cli("apply", str(source), str(output), "--workers", "1", "--quiet",
                   *[a for p in lists for a in ("--hashlist", str(p))], *extra)


def test_force_over_another_jobs_output_leaves_only_this_jobs_shards(
        dataset_copy: Path, planted_values, tmp_path: Path, hf_offline: Path) -> None:
    """--force onto the output of a job over more shards: the other job's shards go, so the
    readers count this job's rows, not both jobs'."""
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    output = tmp_path / "cleaned"
    assert _apply(dataset_copy, output, lists).exit_code == 0
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(dataset_copy.glob("*.parquet"))[0]
    (one / first.name).write_bytes(first.read_bytes())
    assert _apply(one, output, lists).exit_code != 0  # another job: refused without --force
    result = _apply(one, output, lists, "--force")
    expect_ok(result)
    assert sorted(p.name for p in output.glob("*.parquet")) == [first.name]
    assert_reads_as_report(output, tmp_path / "hf-cache")


def test_a_rerun_after_an_input_shard_was_renamed_drops_its_old_output(
        dataset_copy: Path, planted_values, tmp_path: Path, hf_offline: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    output = tmp_path / "cleaned"
    assert _apply(dataset_copy, output, lists).exit_code == 0
    last = sorted(dataset_copy.glob("*.parquet"))[-1]
    last.rename(last.with_name("part-99999.parquet"))
    result = _apply(dataset_copy, output, lists)
    expect_ok(result)
    assert sorted(p.name for p in output.glob("*.parquet")) == sorted(
        p.name for p in dataset_copy.glob("*.parquet"))
    assert_reads_as_report(output, tmp_path / "hf-cache")


def test_parquet_files_no_job_wrote_are_refused_even_with_force(
        sample_dataset: Path, planted_values, tmp_path: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    output = tmp_path / "cleaned"
    output.mkdir()
    stray = sorted(sample_dataset.glob("*.parquet"))[0]
    (output / "other.parquet").write_bytes(stray.read_bytes())
    (output / "notes.txt").write_text("kept\n")
    result = _apply(sample_dataset, output, lists, "--force")
    expect_exit(result, 2)
    assert "other.parquet" in result.stderr
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt", "other.parquet"]
