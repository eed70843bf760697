"""No planted hash or URL reaches outputs, reports, job state, stdout, stderr or logs."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import polars as pl
import pytest

from scrub.layout import companion
from tests.helpers import run_cli, write_planted_lists

pytestmark = pytest.mark.slow


def secrets_of(planted_values: dict[str, list[str]]) -> list[bytes]:
    """Every planted value in every spelling a leak could take."""
    out: list[str] = []
    for value in planted_values["md5"] + planted_values["sha256"]:
        out += [value.lower(), value.upper()]
    for url in planted_values["url"]:
        digest = hashlib.sha256(url.encode()).hexdigest()
        out += [url, digest, digest.upper()]
    return [s.encode() for s in out]


def test_nothing_sensitive_in_outputs_reports_or_logs(sample_dataset: Path, tmp_path: Path,
                                                      planted_values,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    caplog.set_level(logging.DEBUG)
    args = ["apply", str(sample_dataset), str(tmp_path / "out"), "--workers", "2"]
    args += [arg for p in lists for arg in ("--hashlist", str(p))]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    summary = run_cli(*(args + ["--json"]))  # resumed run: JSON report path
    assert summary.exit_code == 0

    captured = (result.stdout + result.stderr + summary.stdout + summary.stderr
                + caplog.text).encode()
    state = companion(tmp_path / "out")  # the report and the job state are searched too
    written = {p: p.read_bytes() for folder in (tmp_path / "out", state)
               for p in folder.rglob("*") if p.is_file()}
    assert any(p.name == "apply-report.json" for p in written)
    assert any(p.name == "job.json" for p in written)
    for secret in secrets_of(planted_values):
        assert secret not in captured
        for path, data in written.items():
            if path.suffix == ".parquet":
                continue  # shards hold the dataset's own (unmatched) rows, checked below
            assert secret not in data, f"{path} leaks a planted value"
    # The planted rows themselves are gone from every output shard.
    out = pl.read_parquet(sorted((tmp_path / "out").glob("*.parquet")))
    assert not out["md5"].is_in(planted_values["md5"]).any()
    assert not out["sha256"].is_in(planted_values["sha256"]).any()
    assert not out["URL"].is_in(planted_values["url"]).any()


def test_a_bad_sensitive_line_is_never_echoed(sample_dataset: Path, tmp_path: Path) -> None:
    secret = "https://victim.example/private/photo.jpg"
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{hashlib.md5(b'x').hexdigest()}\n{secret}\n")
    result = run_cli("apply", str(sample_dataset), str(tmp_path / "o"),
                     "--hashlist", str(bad))
    assert result.exit_code == 2
    assert secret not in result.stdout + result.stderr
    assert "victim" not in result.stdout + result.stderr
