"""``scrub release build`` as a job: an interrupted build resumes to the same bytes, and bad
policies and keys are refused before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import expect_ok, run_cli
from tests.release.planted import POLICIES, build, built, setup  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_an_interrupted_build_resumes_to_the_same_bytes(setup: dict, built: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "again"
    staged = out / ".scrub-release"
    first = build(setup, out, "--no-ledger-update")
    assert first.exit_code == 0
    reference = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    shutil.rmtree(out)
    # a build stopped after two shards: its staging folder holds them and their markers
    from scrub.release import task as build_module

    calls = []
    original = build_module.build_shard

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    build_module.build_shard = failing  # type: ignore[assignment]
    try:
        stopped = run_cli(
                "release", "build", str(setup["data"]), str(out), "--policy",
                str(POLICIES / "research.toml"), "--policy",
                str(POLICIES / "research-safe.toml"), "--signing-key",
                str(setup["root"] / "sign.pem"), "--store", str(setup["store"]),
                "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "1",
                "--release-id", "r-test", "--no-ledger-update", "-q")
        assert stopped.exit_code == 130, stopped.output  # Ctrl-C
    finally:
        build_module.build_shard = original  # type: ignore[assignment]
    assert staged.is_dir() and not (out / "research").exists()
    assert len(list((staged / ".done").glob("*.json"))) == 2
    resumed = build(setup, out, "--no-ledger-update")
    expect_ok(resumed)
    again = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert again.keys() == reference.keys()
    different = [str(p) for p in again if again[p] != reference[p]]
    assert different == [], different


def test_bad_policies_and_keys_are_refused(setup: dict, tmp_path: Path) -> None:
    root = setup["root"]
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[policy]\nname = "x"\n[lists]\nnames = ["no-such-list"]\n')
    result = run_cli("release", "build", str(setup["data"]), str(tmp_path / "o"),
                     "--policy", str(unknown), "--signing-key",
                     str(root / "sign.pem"), "--store", str(setup["store"]))
    assert result.exit_code == 2 and "unknown.toml: lists.names: no list named" in result.output
    high = tmp_path / "high.toml"
    high.write_text('[policy]\nname = "x"\n[[nsfw.rules]]\nabove = 1.5\n')
    result = run_cli("release", "build", str(setup["data"]), str(tmp_path / "o"),
                     "--policy", str(high), "--signing-key", str(root / "sign.pem"))
    assert result.exit_code == 2 and "nsfw.rules[0].above must be a number from 0 to 1" \
        in result.output
    everything = tmp_path / "all.toml"
    everything.write_text('[policy]\nname = "all"\n[[nsfw.rules]]\nabove = 0.0\n')
    result = run_cli("release", "build", str(setup["data"]), str(tmp_path / "o"),
                     "--policy", str(everything), "--signing-key",
                     str(root / "sign.pem"), "-q")
    assert result.exit_code == 2 and "removes every row" in result.output
    assert not (tmp_path / "o" / "all").exists()
    result = run_cli("release", "build", str(setup["data"]), str(tmp_path / "o"),
                     "--policy", str(everything), "--signing-key",
                     str(setup["key"]))
    assert result.exit_code == 2 and "not a PEM private key" in result.output
