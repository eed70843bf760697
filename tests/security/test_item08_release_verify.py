"""Item 8: ``release verify`` accepts exactly the signed release.

The manifest lists every file of the variant (its folder of shards and its companion folder
``V.scrub/``); verify refuses any other file, folder or link at any depth in either, a listed
file that is not a plain file, a manifest whose ``signed_by`` is not the key given, and a signed
listing that points outside its folder; it prints the fingerprint it verified.
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
from scrub.layout import companion
from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item08"))


@pytest.fixture(scope="module")
def release(setup: Setup) -> Path:
    out = setup.root / "out"
    result = setup.build(out, "--release-id", "r8")
    expect_ok(result)
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
    manifest = json.loads((companion(release) / "manifest.json").read_text())
    assert set(manifest["files"]) == every_file(release)  # the variant folder: its shards
    assert set(manifest["files"]) == {s["name"] for s in manifest["shards"]}
    assert set(manifest["companion_files"]) == (every_file(companion(release))
                                                - {"manifest.json", "manifest.sig"})
    for folder, listed in ((release, manifest["files"]),
                           (companion(release), manifest["companion_files"])):
        for name, digest in listed.items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


ADDED = {  # relative to the folder holding the variant ("safe") and its companion
    "subfolder": "safe/extra/part-00009.parquet",
    "orig": "safe/part-00001.parquet.orig",
    "embedding": "safe/img_emb/img_emb_0.npy",
    "state": "safe/_state/part-00009.json",
    "html": "safe.scrub/index.html",
    "hidden": "safe/.hidden",
    "hidden-companion": "safe.scrub/.hidden",
    "partial": "safe.scrub/img_emb/.img_emb_0.npy.x1.partial",
    "deep": "safe.scrub/img_emb/more/deeper/x.txt",
    "shard-in-companion": "safe.scrub/part-00009.parquet",
}


@pytest.mark.parametrize("case", sorted(ADDED))
def test_verify_refuses_a_file_the_manifest_does_not_list(setup: Setup, release: Path,
                                                          tmp_path: Path, case: str) -> None:
    copy = setup.copy_variant(release, tmp_path / "copy")
    added = copy.parent / ADDED[case]
    added.parent.mkdir(parents=True, exist_ok=True)
    added.write_bytes((copy / "part-00000.parquet").read_bytes() if added.suffix == ".parquet"
                      else b"<html>hello</html>\n")
    result = setup.verify(copy)
    expect_exit(result, 3)
    parts = ADDED[case].split("/")
    # named: the file, or the first folder on its way that the release does not have
    named = next("/".join(parts[:i]) for i in range(1, len(parts) + 1)
                 if not (release.parent / "/".join(parts[:i])).exists())
    assert f"{copy.parent / named}:" in result.output
    assert "internal error" not in result.output


def test_verify_refuses_an_empty_folder_and_links(setup: Setup, release: Path,
                                                  tmp_path: Path) -> None:
    for index, make in enumerate((
            lambda c: (c / "empty").mkdir(),
            lambda c: (companion(c) / "empty").mkdir(),
            lambda c: os.symlink(".", c / "loop"),
            lambda c: os.symlink("/etc/hostname", companion(c) / "img_emb" / "notes.txt"))):
        copy = setup.copy_variant(release, tmp_path / f"copy{index}")
        make(copy)
        result = setup.verify(copy)
        assert result.exit_code == 3, (index, result.output)
        assert "internal error" not in result.output


def test_a_listed_file_replaced_by_a_link_is_refused(setup: Setup, release: Path,
                                                     tmp_path: Path) -> None:
    """Same bytes, but through a link to a file outside the release (which can change)."""
    copy = setup.copy_variant(release, tmp_path / "copy")
    outside = tmp_path / "audit.html"
    outside.write_bytes((companion(copy) / "audit.html").read_bytes())
    (companion(copy) / "audit.html").unlink()
    os.symlink(outside, companion(copy) / "audit.html")
    result = setup.verify(copy)
    expect_exit(result, 3)
    assert "audit.html" in result.output


def test_verify_refuses_a_manifest_naming_another_signer(setup: Setup, release: Path,
                                                         tmp_path: Path) -> None:
    copy = setup.copy_variant(release, tmp_path / "copy")
    manifest = json.loads((companion(copy) / "manifest.json").read_text())
    write_signing_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    manifest["signed_by"] = fingerprint(tmp_path / "other.pub")
    resign(companion(copy), manifest, setup.private)  # a valid signature by the real key
    result = setup.verify(copy)
    expect_exit(result, 3)
    assert "names signer" in result.output
    # and a key that did not sign it is refused, whatever the manifest claims
    wrong = setup.verify(release, pubkey=tmp_path / "other.pub")
    assert wrong.exit_code == 3 and "signature does not verify" in wrong.output


def test_verify_prints_the_fingerprint_it_verified(setup: Setup, release: Path) -> None:
    expected = fingerprint(setup.public)
    text = setup.verify(release)
    expect_ok(text)
    assert expected in text.stdout
    as_json = setup.verify(release, "--json")
    expect_ok(as_json)
    assert json.loads(as_json.stdout)["signed_by"] == expected


@pytest.mark.parametrize("listing", ["files", "companion_files"])
@pytest.mark.parametrize("name", ["../outside.txt", "/tmp/outside-abs.txt", "img_emb/../x"])
def test_a_signed_listing_outside_the_folder_is_refused(setup: Setup, release: Path,
                                                        tmp_path: Path, name: str,
                                                        listing: str) -> None:
    copy = setup.copy_variant(release, tmp_path / "copy")
    folder = copy if listing == "files" else companion(copy)
    target = Path(os.path.normpath(folder / name))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"anything\n")
    manifest = json.loads((companion(copy) / "manifest.json").read_text())
    manifest[listing][name] = hashlib.sha256(b"anything\n").hexdigest()
    resign(companion(copy), manifest, setup.private)
    try:
        result = setup.verify(copy)
    finally:
        target.unlink()
    expect_exit(result, 3)
    assert "not a plain relative file name" in result.output


def test_an_unsigned_release_is_refused_as_untrusted(setup: Setup, release: Path,
                                                     tmp_path: Path) -> None:
    copy = setup.copy_variant(release, tmp_path / "copy")
    (companion(copy) / "manifest.sig").unlink()
    result = setup.verify(copy)
    expect_exit(result, 3)
    assert "manifest.sig: missing" in result.output


@pytest.mark.parametrize("how", ["one variant", "release folder"])
def test_a_variant_renamed_as_another_is_refused(setup: Setup, release: Path, tmp_path: Path,
                                                 how: str) -> None:
    """Red-team review of issue 19, finding 5: the unsafe variant ("open") with its companion
    renamed as the safe one verified as one variant. The folder's name must be the manifest's
    variant; the error names both."""
    out = release.parent
    copy = tmp_path / "copy"
    copy.mkdir()
    for source, target in (("open", "safe"), ("safe", "open")):  # swapped, companions too
        setup.copy(out / source, copy / target)
        setup.copy(companion(out / source), companion(copy / target))
    result = setup.verify(copy / "safe" if how == "one variant" else copy)
    expect_exit(result, 3)
    assert any(f"{copy / 'safe'}: the folder is named 'safe'" in line and "'open'" in line
               for line in result.output.splitlines())
    assert "internal error" not in result.output


#: Files a build writes in its private folders (accepted), and others (refused).
PRIVATE_OK = [".scrub-probe/inputs.json", ".scrub-probe/part-00001.probe",
              ".scrub-probe/part-00002.tails", ".scrub-state/safe/part-00000.state"]
PRIVATE_ADDED = {
    "probe-notes": ".scrub-probe/notes.txt",
    "probe-unknown-shard": ".scrub-probe/part-00009.probe",
    "probe-other-kind": ".scrub-probe/part-00000.state",
    "probe-subfolder": ".scrub-probe/sub/part-00000.probe",
    "probe-hidden": ".scrub-probe/.part-00000.probe",
    "state-top-level-file": ".scrub-state/index.html",
    "state-unknown-variant": ".scrub-state/research/part-00000.state",
    "state-unknown-shard": ".scrub-state/safe/part-00009.state",
    "state-other-kind": ".scrub-state/open/part-00000.json",
    "state-deeper": ".scrub-state/open/more/part-00000.state",
    "state-empty-folder": ".scrub-state/open/empty/",
}


@pytest.mark.parametrize("case", sorted(PRIVATE_ADDED))
def test_the_private_state_folders_hold_only_what_a_build_writes(setup: Setup, release: Path,
                                                                 tmp_path: Path,
                                                                 case: str) -> None:
    """Red-team review of issue 19, finding 6: "the folder holds nothing else" while
    ``.scrub-probe/`` and ``.scrub-state/`` held anything. Only the names a build writes there
    (for the variants and shards the manifests list) are accepted; anything else is exit 3
    naming it."""
    copy = setup.copy(release.parent, tmp_path / "copy")
    for name in PRIVATE_OK:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        if not (copy / name).exists():
            (copy / name).write_bytes(b"\0" * 16)
    ok = setup.verify(copy)
    expect_ok(ok)
    added = copy / PRIVATE_ADDED[case]
    if PRIVATE_ADDED[case].endswith("/"):
        added.mkdir(parents=True)
    else:
        added.parent.mkdir(parents=True, exist_ok=True)
        added.write_bytes(b"<html>anything</html>\n")
    result = setup.verify(copy)
    expect_exit(result, 3)
    parts = PRIVATE_ADDED[case].rstrip("/").split("/")
    named = next("/".join(parts[:i]) for i in range(1, len(parts) + 1)
                 if not (release.parent / "/".join(parts[:i])).exists())
    assert f"{copy / named}:" in result.output
    assert "internal error" not in result.output
