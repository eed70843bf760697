"""Decision records: encrypted when a sensitive list contributed, readable with the key only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.crypto import write_key_file
from scrub.layout import companion
from scrub.synthetic import read_column
from tests.helpers import expect_ok, run_cli, write_planted_lists


@pytest.fixture
def lists(tmp_path: Path, planted_values) -> list[Path]:
    return write_planted_lists(tmp_path / "lists", planted_values)


def hashlists(lists: list[Path]) -> list[str]:
    return [arg for p in lists for arg in ("--hashlist", str(p))]


def test_records_are_encrypted_and_readable_with_the_key(sample_dataset: Path, tmp_path: Path,
                                                         lists, planted_values) -> None:
    key = tmp_path / "k"
    write_key_file(key)
    out = tmp_path / "out"
    result = run_cli("apply", sample_dataset, out, *hashlists(lists), "--key-file", key,
                    "--workers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["decision_records"] == {"encrypted": 4}
    files = sorted((companion(out) / "decisions").iterdir())
    assert files and all(p.name.endswith(".decisions.parquet.enc") for p in files)
    raw = b"".join(p.read_bytes() for p in files)
    for value in planted_values["md5"]:
        assert value.encode() not in raw

    assert run_cli("decisions", "show", out).exit_code == 2  # no key, no evidence
    shown = run_cli("decisions", "show", out, "--key-file", key, "--json", "--limit", "0")
    assert shown.exit_code == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(rows) == 71
    assert {tuple(r["reasons"]) for r in rows} == {("content_hash",), ("url_hash",)}
    assert {s for r in rows for s in r["sources"]} == {"partner.txt", "sha.csv", "urls.jsonl"}
    for value in planted_values["md5"] + planted_values["url"]:
        assert value not in shown.stdout


def test_without_a_key_sensitive_records_are_withheld_not_written(sample_dataset: Path,
                                                                  tmp_path: Path,
                                                                  lists) -> None:
    result = run_cli("apply", sample_dataset, tmp_path / "out", *hashlists(lists),
                    "--workers", "1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["decision_records"] == {"withheld": 4}
    assert "decision records of 4 shard(s) were not kept" in result.stderr
    assert not (companion(tmp_path / "out") / "decisions").exists()


def test_perceptual_matches_record_their_distance(sample_dataset: Path,
                                                   tmp_path: Path) -> None:
    pdq = read_column(sample_dataset, "pdq")[5]
    flipped = f"{int(pdq[0], 16) ^ 0x3:x}" + pdq[1:]  # two bits away
    listing = tmp_path / "l.csv"
    listing.write_text(f"type,value\npdq,{flipped}\n")
    out = tmp_path / "out"
    key = tmp_path / "k"
    write_key_file(key)
    result = run_cli("apply", sample_dataset, out, "--hashlist", listing, "--workers", "1",
                    "--quiet", "--key-file", key)
    assert result.exit_code == 0
    shown = run_cli("decisions", "show", out, "--key-file", key, "--json")
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert rows == [{"shard": "part-00000.parquet", "row": 5, "reasons": ["perceptual_hash"],
                     "sources": ["l.csv"], "distance": 2}]


def test_public_opt_out_records_are_kept_in_clear(sample_dataset: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUB_HOME", str(tmp_path / "home"))
    url = read_column(sample_dataset, "URL")[7]
    listing = tmp_path / "optout.csv"
    listing.write_text(f'type,value\nurl,"{url}"\n')
    assert run_cli("lists", "import", listing, "--name", "optout", "--source", "artists",
                  "--version", "1").exit_code == 0
    out = tmp_path / "out"
    result = run_cli("apply", sample_dataset, out, "--list", "optout", "--workers", "1", "--json")
    assert json.loads(result.stdout)["decision_records"] == {"none": 3, "plain": 1}
    shown = run_cli("decisions", "show", out, "--json")
    assert [json.loads(line)["reasons"] for line in shown.stdout.splitlines()] == \
        [["optout_url"]]


def test_records_of_a_run_by_an_older_scrub_are_still_shown(sample_dataset: Path,
                                                            tmp_path: Path, lists) -> None:
    """An older scrub kept the records inside OUTPUT, in ``.scrub/``."""
    out, key = tmp_path / "out", tmp_path / "k"
    write_key_file(key)
    result = run_cli("apply", sample_dataset, out, "--hashlist", lists[2], "--workers", "1",
                    "--quiet", "--key-file", key)
    expect_ok(result)
    companion(out).rename(out / ".scrub")
    shown = run_cli("decisions", "show", out, "--json", "--limit", "0", "--key-file", key)
    expect_ok(shown)
    assert len(shown.stdout.splitlines()) == 21  # the planted URL rows
