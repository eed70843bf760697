"""The command line's wiring: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.layout import companion
from tests.helpers import run_cli, write_planted_lists


@pytest.fixture
def lists(tmp_path: Path, planted_values) -> list[Path]:
    return write_planted_lists(tmp_path / "lists", planted_values)


def hashlist_args(lists: list[Path]) -> list[str]:
    return [arg for p in lists for arg in ("--hashlist", str(p))]


def test_apply_json_report_on_stdout(sample_dataset: Path, tmp_path: Path, lists) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out", *hashlist_args(lists),
                    "--workers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_removed"] == 71
    assert "apply: 4/4 shards" in result.stderr  # progress goes to stderr


def test_apply_summary_for_people(sample_dataset: Path, tmp_path: Path, lists) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out", *hashlist_args(lists),
                    "--workers", "1", "--quiet")
    assert result.exit_code == 0
    assert "rows removed: 71" in result.stdout
    assert "by list partner.txt: 37" in result.stdout
    assert result.stderr == ""


def test_a_malformed_list_exits_2_and_writes_nothing(sample_dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0123456789abcdef0123456789abcdef\nnot-a-hash\n")
    result = run_cli("apply", sample_dataset, tmp_path / "out", "--hashlist", bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"scrub: error: {bad}:2: unrecognised value form")
    assert "Traceback" not in result.stderr and "not-a-hash" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_no_hashlist_is_a_usage_error(sample_dataset: Path, tmp_path: Path) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out")
    assert result.exit_code == 2
    assert "--hashlist" in result.stderr


def test_an_output_conflict_exits_2_with_a_hint(sample_dataset: Path, tmp_path: Path,
                                                lists) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = run_cli("apply", sample_dataset, tmp_path / "out", *hashlist_args(lists))
    assert result.exit_code == 2
    assert "hint: choose another OUTPUT, or pass --force" in result.stderr


def test_a_failed_shard_exits_2_naming_it(dataset_copy: Path, tmp_path: Path, lists) -> None:
    victim = sorted(dataset_copy.glob("*.parquet"))[1]
    victim.write_bytes(b"PAR1 this is not parquet")
    result = run_cli("apply", dataset_copy, tmp_path / "out", *hashlist_args(lists),
                    "--workers", "1", "--quiet")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("scrub: error: 1 of 4 shards failed: ")
    assert victim.name in lines[0]
    assert "rerun the same command" in lines[1]


def test_bad_column_override_is_a_user_error(sample_dataset: Path, tmp_path: Path,
                                             lists) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out", *hashlist_args(lists),
                    "--column", "nonsense")
    assert result.exit_code == 2 and "ROLE=COLUMN" in result.stderr


def test_unknown_option_exits_2() -> None:
    assert run_cli("apply", "--bogus").exit_code == 2


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("scrub ")


@pytest.mark.slow
def test_demo_runs_and_summarises(tmp_path: Path) -> None:
    result = run_cli("demo", "--workdir", tmp_path / "demo", "--rows", "8000", "--shards", "2",
                    "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "planted:      12 rows" in result.stdout
    assert "rows removed: 12" in result.stdout
    assert (companion(tmp_path / "demo" / "scrubbed") / "apply-report.json").is_file()
    assert (tmp_path / "demo" / "dataset" / "img_emb" / "img_emb_1.npy").is_file()
