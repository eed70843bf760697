"""Helpers shared by tests: the in-process CLI, planted lists, expected outputs and folder
snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner, Result

from scrub.cli.main import app as scrub_app
from scrub.synthetic import random_md5s, write_hashlist

_RUNNER = CliRunner()


def run_cli(*args: object, env: Mapping[str, str | None] | None = None,
            app: typer.Typer | None = None, terminal_width: int | None = None,
            input_text: str | None = None) -> Result:
    """``scrub ARGS`` run in process (each argument as ``str``), or ``app`` when given: the
    result's ``exit_code``, ``stdout`` and ``stderr`` apart, ``output`` both interleaved."""
    return _RUNNER.invoke(app or scrub_app, [str(a) for a in args], env=env,
                          terminal_width=terminal_width, input=input_text)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Terminate a server process the tests started, killing it when it does not end."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def expect_exit(result: Result, code: int, *phrases: str) -> Result:
    """Check that a run exited with ``code`` and printed every one of ``phrases`` (stdout or
    stderr); the failure message shows all it printed. Returns ``result`` for chaining."""
    assert result.exit_code == code, (
        f"exit {result.exit_code}, expected {code}\n{result.output}")
    for phrase in phrases:
        assert phrase in result.output, f"{phrase!r} not printed:\n{result.output}"
    return result


def expect_ok(result: Result, *phrases: str) -> Result:
    """``expect_exit(result, 0, *phrases)``: the run succeeded."""
    return expect_exit(result, 0, *phrases)


def write_planted_lists(folder: Path, values: dict[str, list[str]]) -> list[Path]:
    """Three lists: md5 text (with decoys), sha256 CSV and url_sha256 JSONL of planted values."""
    folder.mkdir(parents=True, exist_ok=True)
    md5 = write_hashlist(folder / "partner.txt",
                         list(values["md5"]) + list(random_md5s(500, seed=99)),
                         header="test partner list")
    sha = folder / "sha.csv"
    sha.write_text("type,value\n" + "".join(f"sha256,{v.upper()}\n" for v in values["sha256"]))
    urls = folder / "urls.jsonl"
    urls.write_text("".join(
        json.dumps({"type": "url_sha256", "value": hashlib.sha256(u.encode()).hexdigest()}) + "\n"
        for u in values["url"]))
    return [md5, sha, urls]


def shard_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet"))


def expected_outputs(dataset: Path, drop_global_rows: np.ndarray) -> dict[str, pa.Table]:
    """Each input shard minus the given global row numbers."""
    out: dict[str, pa.Table] = {}
    start = 0
    drop = set(int(r) for r in drop_global_rows)
    for path in shard_paths(dataset):
        table = pq.read_table(path)
        keep = np.array([(start + i) not in drop for i in range(table.num_rows)])
        out[path.name] = table.filter(pa.array(keep))
        start += table.num_rows
    return out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every shard and report file's bytes (not the job state), for byte-for-byte comparisons."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@contextlib.contextmanager
def read_only_folder(where: Path) -> Iterator[Path]:
    """An empty folder nobody can write, root included: a read-only tmpfs mounted there (as
    root), else a 0555 folder (as another user). Skips the test where root cannot mount."""
    import os
    import shutil
    import subprocess

    import pytest

    where.mkdir(parents=True)
    if os.geteuid() != 0:
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)
        return
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)],
            capture_output=True).returncode != 0:
        pytest.skip("root cannot mount a read-only tmpfs here: no folder is read-only to root")
    try:
        yield where
    finally:
        subprocess.run([umount, "-l", str(where)], capture_output=True)
