"""``apply`` over generated shards: exactly the planted rows go, the rest stays byte-for-byte."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.apply import apply
from scrub.engine.plan import plan_from_hashlists
from scrub.errors import OutputConflictError, ShardsFailedError, UserInputError
from scrub.layout import companion
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import generate_dataset
from tests.helpers import expected_outputs, folder_bytes, shard_paths, write_planted_lists


def run(dataset: Path, output: Path, lists: list[Path], **kwargs):
    return apply(lambda: plan_from_hashlists([read_hashlist(p) for p in lists]), dataset, output,
                 progress=False, **kwargs)


@pytest.fixture
def lists(tmp_path: Path, planted_values: dict[str, list[str]]) -> list[Path]:
    return write_planted_lists(tmp_path / "lists", planted_values)


def all_planted(planted: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(planted.values()))


def test_exactly_the_planted_rows_are_removed(sample_dataset: Path, tmp_path: Path,
                                              lists: list[Path], planted) -> None:
    result = run(sample_dataset, tmp_path / "out", lists, workers=1)
    expected = expected_outputs(sample_dataset, all_planted(planted))
    outputs = shard_paths(tmp_path / "out")
    assert [p.name for p in outputs] == sorted(expected)
    for path in outputs:
        got = pq.read_table(path)
        want = expected[path.name]
        assert got.schema.equals(want.schema, check_metadata=True)
        assert got.equals(want), path.name
    report = result.report
    assert report["rows_in"] == 20_000
    assert report["rows_removed"] == 71
    assert report["rows_out"] == 20_000 - 71
    assert report["removed_by_reason"] == {"content_hash": 50, "url_hash": 21}
    assert report["removed_by_list"] == {"partner.txt": 37, "sha.csv": 13, "urls.jsonl": 21}
    assert json.loads((companion(tmp_path / "out") / "apply-report.json").read_text()) == report


@pytest.mark.slow
def test_parallel_and_serial_runs_write_identical_bytes(sample_dataset: Path, tmp_path: Path,
                                                        lists: list[Path]) -> None:
    run(sample_dataset, tmp_path / "serial", lists, workers=1)
    run(sample_dataset, tmp_path / "parallel", lists, workers=2)
    serial, parallel = folder_bytes(tmp_path / "serial"), folder_bytes(tmp_path / "parallel")
    serial_report = json.loads((companion(tmp_path / "serial") / "apply-report.json").read_text())
    parallel_report = json.loads((companion(tmp_path / "parallel") / "apply-report.json")
                                 .read_text())
    assert serial == parallel
    serial_report.pop("output"), parallel_report.pop("output")
    assert serial_report == parallel_report


def test_rerunning_a_finished_job_changes_nothing(sample_dataset: Path, tmp_path: Path,
                                                  lists: list[Path]) -> None:
    run(sample_dataset, tmp_path / "out", lists, workers=1)
    before = folder_bytes(tmp_path / "out")
    mtimes = {p.name: p.stat().st_mtime_ns for p in shard_paths(tmp_path / "out")}
    run(sample_dataset, tmp_path / "out", lists, workers=1)
    assert folder_bytes(tmp_path / "out") == before
    assert {p.name: p.stat().st_mtime_ns for p in shard_paths(tmp_path / "out")} == mtimes


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_bytes(tmp_path: Path, planted_values) -> None:
    dataset = generate_dataset(tmp_path / "big", rows=120_000, shards=24, seed=3,
                               embeddings=False)
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    reference = tmp_path / "reference"
    run(dataset, reference, lists, workers=1)

    output = tmp_path / "out"
    command = [sys.executable, "-m", "scrub", "apply", str(dataset), str(output),
               "--workers", "1", "--quiet"] + [arg for p in lists for arg in ("--hashlist", str(p))]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = companion(output) / "done"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_dir() and len(list(done.iterdir())) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finished = len(list(done.iterdir()))
    assert 3 <= finished < 24
    assert not (companion(output) / "apply-report.json").exists()

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert folder_bytes(output) == folder_bytes(reference)
    report = json.loads((companion(output) / "apply-report.json").read_text())
    ref_report = json.loads((companion(reference) / "apply-report.json").read_text())
    report.pop("output"), ref_report.pop("output")
    assert report == ref_report


@pytest.mark.slow
def test_a_corrupt_shard_is_named_the_rest_complete_and_a_rerun_finishes(
        dataset_copy: Path, tmp_path: Path, lists: list[Path]) -> None:
    reference = tmp_path / "reference"
    run(dataset_copy, reference, lists, workers=1)
    victim = shard_paths(dataset_copy)[2]
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])  # truncated: no footer
    output = tmp_path / "out"
    with pytest.raises(ShardsFailedError) as info:
        run(dataset_copy, output, lists, workers=2)
    assert str(victim) in str(info.value)
    assert [name for name, _ in info.value.failures] == [victim.as_posix()]
    assert sorted(p.name for p in shard_paths(output)) == sorted(
        p.name for p in shard_paths(dataset_copy) if p != victim)
    assert not (companion(output) / "apply-report.json").exists()

    victim.write_bytes(original)
    run(dataset_copy, output, lists, workers=2)
    assert folder_bytes(output).keys() == folder_bytes(reference).keys()
    assert folder_bytes(output) == folder_bytes(reference)


def test_a_shard_without_the_needed_column_is_named(tmp_path: Path, lists: list[Path],
                                                    sample_dataset: Path) -> None:
    source = tmp_path / "nomd5"
    source.mkdir()
    table = pq.read_table(shard_paths(sample_dataset)[0]).drop_columns(["md5"])
    pq.write_table(table, source / "part-00000.parquet")
    with pytest.raises(ShardsFailedError) as info:
        run(source, tmp_path / "out", lists, workers=1)
    message = str(info.value)
    assert "part-00000.parquet" in message and "md5" in message and "roles found" in message


def test_column_override_maps_a_role(tmp_path: Path, lists: list[Path],
                                     sample_dataset: Path, planted) -> None:
    source = tmp_path / "renamed"
    source.mkdir()
    for path in shard_paths(sample_dataset):
        table = pq.read_table(path).rename_columns(
            ["image_url" if n == "URL" else n for n in pq.read_schema(path).names])
        pq.write_table(table, source / path.name)
    with pytest.raises(ShardsFailedError):
        run(source, tmp_path / "out1", lists, workers=1)
    result = run(source, tmp_path / "out2", lists, workers=1,
                 column_overrides={"url": "image_url"})
    assert result.report["rows_removed"] == 71


def test_unmatchable_values_are_counted_not_fatal(tmp_path: Path, lists: list[Path],
                                                  planted_values) -> None:
    source = tmp_path / "messy"
    source.mkdir()
    md5 = [planted_values["md5"][0], None, "xyz", planted_values["md5"][1].upper(), "", "0" * 31]
    table = pa.table({"URL": [None, "", "data:image/png;base64,AAAA", "x" * 10_000, "é\x00",
                              "http://a.example/"],
                      # all null, but of a type that can hold digests (a null-typed column is
                      # an error: tests/security/test_item02_column_types.py)
                      "md5": md5, "sha256": pa.array([None] * 6, pa.string())})
    pq.write_table(table, source / "part-0.parquet")
    result = run(source, tmp_path / "out", lists, workers=1)
    assert result.report["rows_removed"] == 2  # the planted md5s, in either case
    assert result.report["unmatchable"] == {"URL (not a URL)": 5, "md5": 4, "sha256": 6}


def test_an_output_holding_something_else_is_refused(sample_dataset: Path, tmp_path: Path,
                                                     lists: list[Path]) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(OutputConflictError, match="not empty"):
        run(sample_dataset, output, lists, workers=1)
    assert sorted(os.listdir(output)) == ["notes.txt"]
    run(sample_dataset, output, lists, workers=1, force=True)
    assert (output / "notes.txt").read_text() == "mine"
    assert (companion(output) / "apply-report.json").is_file()

    with pytest.raises(OutputConflictError, match="different scrub job"):
        run(sample_dataset, output, lists[:1], workers=1)
    run(sample_dataset, output, lists[:1], workers=1, force=True)
    report = json.loads((companion(output) / "apply-report.json").read_text())
    assert report["removed_by_list"] == {"partner.txt": 37}


def test_output_must_differ_from_input(dataset_copy: Path, lists: list[Path]) -> None:
    with pytest.raises(UserInputError, match="must differ"):
        run(dataset_copy, dataset_copy, lists, workers=1)


def test_an_empty_input_folder_is_an_error(tmp_path: Path, lists: list[Path]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no parquet shards"):
        run(tmp_path / "empty", tmp_path / "out", lists)


def test_changed_input_shard_is_recomputed_on_rerun(dataset_copy: Path, tmp_path: Path,
                                                    lists: list[Path]) -> None:
    run(dataset_copy, tmp_path / "out", lists, workers=1)
    victim = shard_paths(dataset_copy)[0]
    table = pq.read_table(victim).slice(0, 100)
    pq.write_table(table, victim)
    result = run(dataset_copy, tmp_path / "out", lists, workers=1)
    assert pq.read_metadata(tmp_path / "out" / victim.name).num_rows <= 100
    assert result.report["per_shard"][0]["rows_in"] == 100


def test_the_report_lists_every_shard_in_input_order(sample_dataset: Path, tmp_path: Path,
                                                     lists: list[Path]) -> None:
    result = run(sample_dataset, tmp_path / "out", lists, workers=1)
    per_shard = result.report["per_shard"]
    assert [s["shard"] for s in per_shard] == [p.name for p in shard_paths(sample_dataset)]
    assert sum(s["rows_out"] for s in per_shard) == result.report["rows_out"]


def test_shards_whose_schemas_disagree_are_named(dataset_copy: Path, tmp_path: Path,
                                                 lists: list[Path]) -> None:
    victim = shard_paths(dataset_copy)[3]
    table = pq.read_table(victim)
    table = table.set_column(table.schema.get_field_index("WIDTH"), "WIDTH",
                             table.column("WIDTH").cast(pa.string()))
    pq.write_table(table, victim)
    with pytest.raises(UserInputError) as info:
        run(dataset_copy, tmp_path / "out", lists, workers=1)
    message = str(info.value)
    assert victim.name in message and "'WIDTH'" in message and "part-00000" in message
    assert not (companion(tmp_path / "out") / "apply-report.json").exists()


@pytest.mark.slow
def test_a_hundred_shards_with_one_corrupt_report_exactly_that_shard(tmp_path: Path,
                                                                     planted_values) -> None:
    dataset = generate_dataset(tmp_path / "many", rows=20_000, shards=100, seed=8,
                               embeddings=False)
    victim = shard_paths(dataset)[57]
    victim.write_bytes(victim.read_bytes()[:-100])  # the footer is gone
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    with pytest.raises(ShardsFailedError) as info:
        run(dataset, tmp_path / "out", lists, workers=2)
    assert [name for name, _ in info.value.failures] == [victim.as_posix()]
    assert len(shard_paths(tmp_path / "out")) == 99


def test_output_holds_its_shards_only_with_report_and_state_beside_it(
        sample_dataset: Path, tmp_path: Path, lists: list[Path]) -> None:
    result = run(sample_dataset, tmp_path / "out", lists, workers=1)
    assert sorted(os.listdir(tmp_path / "out")) == [p.name for p in shard_paths(sample_dataset)]
    state = tmp_path / "out.scrub"  # the companion folder: DIR.scrub beside DIR
    assert result.path == state / "apply-report.json"
    assert (state / "job.json").is_file() and len(list((state / "done").iterdir())) == 4


def test_an_output_of_the_previous_layout_is_refused_then_replaced_with_force(
        sample_dataset: Path, tmp_path: Path, lists: list[Path]) -> None:
    """An older scrub kept its state and report inside OUTPUT: refused as another job's output;
    with --force, both go (they are scrub's own) and OUTPUT holds its shards only."""
    output = tmp_path / "out"
    run(sample_dataset, output, lists, workers=1)
    companion(output).rename(tmp_path / "state")
    (tmp_path / "state").rename(output / ".scrub")
    (output / ".scrub" / "apply-report.json").rename(output / "apply-report.json")
    with pytest.raises(OutputConflictError, match="holds the output of an older scrub"):
        run(sample_dataset, output, lists, workers=1)
    run(sample_dataset, output, lists, workers=1, force=True)
    assert sorted(os.listdir(output)) == [p.name for p in shard_paths(sample_dataset)]
    assert (companion(output) / "apply-report.json").is_file()


def test_an_output_that_is_a_mount_point_gets_its_shards(sample_dataset: Path, tmp_path: Path,
                                                         lists: list[Path]) -> None:
    """Shards are written on OUTPUT's own file system and renamed there, never across file
    systems into it (the report and state lie beside OUTPUT, on its parent's)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    output = tmp_path / "mounted"
    output.mkdir()
    if os.geteuid() != 0 or mount is None or umount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(output)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        result = run(sample_dataset, output, lists, workers=1)
        assert result.report["rows_removed"] == 71
        assert sorted(os.listdir(output)) == [p.name for p in shard_paths(sample_dataset)]
    finally:
        subprocess.run([umount, "-l", str(output)], capture_output=True)
