"""Item 8: ``release verify`` accepts exactly the signed release.

The manifest lists every file of the variant; verify refuses any other file, folder or link at
any depth, a listed file that is not a plain file, a manifest whose ``signed_by`` is not the key
given, and a signed listing that points outside the folder; it prints the fingerprint it
verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from scrub.crypto import (
    load_public_key,
    load_signing_key,
    public_key_bytes,
    public_key_fingerprint,
    write_signing_keypair,
)
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item08"))


@pytest.fixture(scope="module")
def release(setup: Setup) -> Path:
    out = setup.root / "out"
    result = setup.build(out, "--release-id", "r8")
    assert result.exit_code == 0, result.output
    return out / "safe"


def fingerprint(public: Path) -> str:
    return public_key_fingerprint(public_key_bytes(load_public_key(public)))


def resign(folder: Path, manifest: dict, private: Path) -> None:
    body = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (folder / "manifest.json").write_bytes(body)
    signature = load_signing_key(private).sign(body)
    (folder / "manifest.sig").write_bytes(base64.b64encode(signature) + b"\n")


def every_file(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_manifest_lists_every_file_of_the_release(release: Path) -> None:
    manifest = json.loads((release / "manifest.json").read_text())
    listed = manifest["files"]
    assert set(listed) == every_file(release) - {"manifest.json", "manifest.sig"}
    for name, digest in listed.items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest


ADDED = {
    "subfolder": "extra/part-00009.parquet",
    "orig": "part-00001.parquet.orig",
    "embedding": "img_emb/img_emb_9.npy",
    "state": "_state/part-00009.json",
    "html": "index.html",
    "hidden": ".hidden",
    "partial": "img_emb/.img_emb_0.npy.x1.partial",
    "deep": "img_emb/more/deeper/x.txt",
}


@pytest.mark.parametrize("case", sorted(ADDED))
def test_verify_refuses_a_file_the_manifest_does_not_list(setup: Setup, release: Path,
                                                          tmp_path: Path, case: str) -> None:
    copy = setup.copy(release, tmp_path / "copy")
    added = copy / ADDED[case]
    added.parent.mkdir(parents=True, exist_ok=True)
    added.write_bytes((copy / "part-00000.parquet").read_bytes() if added.suffix == ".parquet"
                      else b"<html>hello</html>\n")
    result = setup.verify(copy)
    assert result.exit_code == 3, result.output
    parts = ADDED[case].split("/")
    # named: the file, or the first folder on its way that the release does not have
    named = next("/".join(parts[:i]) for i in range(1, len(parts) + 1)
                 if not (release / "/".join(parts[:i])).exists())
    assert f"{copy / named}:" in result.output
    assert "internal error" not in result.output


def test_verify_refuses_an_empty_folder_and_links(setup: Setup, release: Path,
                                                  tmp_path: Path) -> None:
    for index, make in enumerate((
            lambda c: (c / "empty").mkdir(),
            lambda c: os.symlink(".", c / "loop"),
            lambda c: os.symlink("/etc/hostname", c / "img_emb" / "notes.txt"))):
        copy = setup.copy(release, tmp_path / f"copy{index}")
        make(copy)
        result = setup.verify(copy)
        assert result.exit_code == 3, (index, result.output)
        assert "internal error" not in result.output


def test_a_listed_file_replaced_by_a_link_is_refused(setup: Setup, release: Path,
                                                     tmp_path: Path) -> None:
    """Same bytes, but through a link to a file outside the release (which can change)."""
    copy = setup.copy(release, tmp_path / "copy")
    outside = tmp_path / "audit.html"
    outside.write_bytes((copy / "audit.html").read_bytes())
    (copy / "audit.html").unlink()
    os.symlink(outside, copy / "audit.html")
    result = setup.verify(copy)
    assert result.exit_code == 3, result.output
    assert "audit.html" in result.output


def test_verify_refuses_a_manifest_naming_another_signer(setup: Setup, release: Path,
                                                         tmp_path: Path) -> None:
    copy = setup.copy(release, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    write_signing_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    manifest["signed_by"] = fingerprint(tmp_path / "other.pub")
    resign(copy, manifest, setup.private)  # a valid signature by the real key
    result = setup.verify(copy)
    assert result.exit_code == 3, result.output
    assert "names signer" in result.output
    # and a key that did not sign it is refused, whatever the manifest claims
    wrong = setup.verify(release, pubkey=tmp_path / "other.pub")
    assert wrong.exit_code == 3 and "signature does not verify" in wrong.output


def test_verify_prints_the_fingerprint_it_verified(setup: Setup, release: Path) -> None:
    expected = fingerprint(setup.public)
    text = setup.verify(release)
    assert text.exit_code == 0, text.output
    assert expected in text.stdout
    as_json = setup.verify(release, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["signed_by"] == expected


@pytest.mark.parametrize("name", ["../outside.txt", "/tmp/outside-abs.txt", "img_emb/../x"])
def test_a_signed_listing_outside_the_folder_is_refused(setup: Setup, release: Path,
                                                        tmp_path: Path, name: str) -> None:
    copy = setup.copy(release, tmp_path / "copy")
    target = Path(os.path.normpath(copy / name))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"anything\n")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.setdefault("files", {})[name] = hashlib.sha256(b"anything\n").hexdigest()
    resign(copy, manifest, setup.private)
    try:
        result = setup.verify(copy)
    finally:
        target.unlink()
    assert result.exit_code == 3, result.output
    assert "not a plain relative file name" in result.output


def test_an_unsigned_release_is_refused_as_untrusted(setup: Setup, release: Path,
                                                     tmp_path: Path) -> None:
    copy = setup.copy(release, tmp_path / "copy")
    (copy / "manifest.sig").unlink()
    result = setup.verify(copy)
    assert result.exit_code == 3, result.output
    assert "manifest.sig: missing" in result.output
