"""``scrub apply --list`` with stored lists, versions and allow-lists, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scrub.crypto import write_key_file
from tests.helpers import run_cli


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCRUB_HOME", str(tmp_path / "home"))
    key = tmp_path / "data.key"
    write_key_file(key)
    monkeypatch.setenv("SCRUB_KEY_FILE", str(key))
    return tmp_path


def test_apply_with_stored_versions_and_an_allow_list(sample_dataset: Path, env: Path,
                                                      planted_values) -> None:
    md5s = planted_values["md5"]
    (env / "v1.txt").write_text("\n".join(md5s[:20]) + "\n")
    (env / "v2.txt").write_text("\n".join(md5s) + "\n")
    (env / "fp.txt").write_text("\n".join(md5s[:3]) + "\n")
    for version, name in (("1", "v1.txt"), ("2", "v2.txt")):
        result = run_cli("lists", "import", env / name, "--name", "partner", "--source", "ncmec",
                        "--version", version)
        assert result.exit_code == 0, result.stderr
    result = run_cli("lists", "import", env / "fp.txt", "--name", "known-fp", "--source", "us",
                    "--version", "1", "--kind", "allow", "--suppresses", "partner")
    assert result.exit_code == 0, result.stderr

    result = run_cli("apply", sample_dataset, env / "old", "--list", "partner@1", "--json",
                    "--workers", "1")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_removed"] == 17  # 20 listed, 3 known false positives kept
    assert report["suppressed_by_allowlist"] == {"partner@1": 3}

    result = run_cli("apply", sample_dataset, env / "new", "--list", "partner", "--json",
                    "--workers", "1")
    report = json.loads(result.stdout)
    assert report["rows_removed"] == len(md5s) - 3
    assert report["removed_by_list"] == {"partner@2": len(md5s) - 3}


def test_lists_commands_print_metadata_never_values(env: Path, planted_values) -> None:
    md5s = planted_values["md5"]
    (env / "p.txt").write_text("\n".join(md5s) + "\n")
    assert run_cli("lists", "import", env / "p.txt", "--name", "partner", "--source", "ncmec",
                  "--version", "1").exit_code == 0
    outputs = [run_cli("lists", "ls"), run_cli("lists", "show", "partner"),
               run_cli("lists", "show", "partner@1", "--json"), run_cli("lists", "verify")]
    for result in outputs:
        assert result.exit_code == 0, result.stderr
        for value in md5s:
            assert value not in result.stdout and value.upper() not in result.stdout
    assert "md5 37" in outputs[0].stdout
    assert json.loads(outputs[2].stdout)["counts"] == {"md5": 37}
    assert "store OK" in outputs[3].stdout


def test_lists_exit_codes(env: Path, tmp_path: Path) -> None:
    (env / "bad.txt").write_text("abc\n")
    result = run_cli("lists", "import", env / "bad.txt", "--name", "p", "--source", "s",
                    "--version", "1")
    assert result.exit_code == 2 and "bad.txt:1" in result.stderr
    pub = tmp_path / "k.pub"
    pub.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert run_cli("lists", "trust", "--source", "ncmec", "--key", pub).exit_code == 0
    (env / "p.txt").write_text("0" * 32 + "\n")
    result = run_cli("lists", "import", env / "p.txt", "--name", "p", "--source", "ncmec",
                    "--version", "1")
    assert result.exit_code == 3 and "signature" in result.stderr
    assert run_cli("lists", "show", "nope").exit_code == 2


def test_keygen(tmp_path: Path) -> None:
    result = run_cli("keygen", "--output", tmp_path / "k")
    assert result.exit_code == 0 and "key id" in result.stdout
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert run_cli("keygen", "--output", tmp_path / "k").exit_code == 2  # never overwrites
    result = run_cli("keygen", "--signing", "--output", tmp_path / "sign")
    assert result.exit_code == 0 and (tmp_path / "sign.pub").is_file()
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "sign").read_bytes()


def test_apply_with_a_list_file_and_a_sensitive_stored_list(sample_dataset: Path, env: Path,
                                                            planted_values) -> None:
    md5s = planted_values["md5"]
    (env / "stored.txt").write_text("\n".join(md5s[:5]) + "\n")
    (env / "file.txt").write_text("\n".join(md5s[5:10]) + "\n")
    result = run_cli("lists", "import", env / "stored.txt", "--name", "partner", "--source",
                     "ncmec", "--version", "1")
    assert result.exit_code == 0, result.stderr
    result = run_cli("apply", sample_dataset, env / "out", "--hashlist", env / "file.txt",
                     "--list", "partner", "--json", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows_removed"] == 10
