"""Item 7: ``release build --from OLD`` reuses nothing of OLD that its signing key did not sign.

OLD's manifests must verify with the public half of the build's signing key (and name it),
and every file reused (shards, embeddings, the carried removal list) must have the sha256 the
signed manifest lists; otherwise the build stops with exit 3, publishing nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.crypto import load_signing_key, write_signing_keypair
from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item07"))


@pytest.fixture(scope="module")
def base(setup: Setup) -> Path:
    out = setup.root / "base"
    result = setup.build(out, "--release-id", "base")
    expect_ok(result)
    return out


def refused(setup: Setup, old: Path, out: Path, expected: str, *extra: str) -> None:
    """A --from build from ``old`` stops with exit 3 naming ``expected``, publishing nothing."""
    result = setup.build(out, "--from", str(old), *extra)
    expect_exit(result, 3)
    assert expected in result.output
    assert "internal error" not in result.output
    assert not any((out / p.stem).exists() for p in setup.policies)


def resign(folder: Path, manifest: dict, private: Path) -> None:
    """Write ``manifest`` and sign it with ``private`` (as the build does)."""
    body = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (folder / "manifest.json").write_bytes(body)
    signature = load_signing_key(private).sign(body)
    (folder / "manifest.sig").write_bytes(base64.b64encode(signature) + b"\n")


def put_back_a_removed_row(setup: Setup, shard: Path) -> None:
    """Rewrite a published shard with one row the policy removed appended."""
    source = pq.read_table(setup.data / shard.name)
    kept = pq.read_table(shard)
    gone = np.flatnonzero(~np.isin(source["key"].to_numpy(), kept["key"].to_numpy()))
    pq.write_table(pa.concat_tables([kept, source.take([int(gone[0])])]), shard)


def test_a_shard_changed_in_the_old_release_is_not_signed_again(
        setup: Setup, base: Path, tmp_path: Path) -> None:
    old = setup.copy(base, tmp_path / "old")
    put_back_a_removed_row(setup, old / "safe" / "part-00001.parquet")
    refused(setup, old, tmp_path / "out", "safe/part-00001.parquet: sha256 differs from the "
            "previous release's signed manifest")
    # the shard as it was signed: the same rebuild goes through and verifies
    (old / "safe" / "part-00001.parquet").write_bytes(
        (base / "safe" / "part-00001.parquet").read_bytes())
    again = setup.build(tmp_path / "out", "--from", str(old))
    expect_ok(again)
    assert setup.verify(tmp_path / "out" / "safe").exit_code == 0


@pytest.mark.parametrize("relative", ["open.scrub/img_emb/img_emb_0.npy",
                                      "safe.scrub/removals.parquet"])
def test_changed_embeddings_or_removal_list_are_not_signed_again(
        setup: Setup, base: Path, tmp_path: Path, relative: str) -> None:
    old = setup.copy(base, tmp_path / "old")
    target = old / relative
    if target.suffix == ".npy":
        array = np.load(target)
        array[3] = 0
        np.save(target, array)
    else:  # a removal list cut in half: the new release would stop removing those rows
        table = pq.read_table(target)
        pq.write_table(table.slice(0, table.num_rows // 2), target)
    refused(setup, old, tmp_path / "out", f"{relative}: sha256 differs from the previous "
            "release's signed manifest")


def test_an_edited_manifest_is_refused(setup: Setup, base: Path, tmp_path: Path) -> None:
    old = setup.copy(base, tmp_path / "old")
    shard = old / "safe" / "part-00002.parquet"
    put_back_a_removed_row(setup, shard)
    manifest = json.loads((old / "safe.scrub" / "manifest.json").read_text())
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    for entry in manifest["shards"]:
        if entry["name"] == shard.name:
            entry["sha256"], entry["rows"] = digest, entry["rows"] + 1
    if shard.name in manifest.get("files", {}):  # the full file listing, where there is one
        manifest["files"][shard.name] = digest
    (old / "safe.scrub" / "manifest.json").write_text(json.dumps(manifest, indent=2,
                                                                 sort_keys=True) + "\n")
    refused(setup, old, tmp_path / "out",
            "safe.scrub/manifest.json: the signature does not verify")
    # signed again by someone else's key, naming it as the signer: still refused
    write_signing_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    manifest["signed_by"] = "ed25519:" + "0" * 32
    resign(old / "safe.scrub", manifest, tmp_path / "other.pem")
    refused(setup, old, tmp_path / "out2",
            "safe.scrub/manifest.json: the signature does not verify")


def test_an_unsigned_old_release_is_refused(setup: Setup, base: Path, tmp_path: Path) -> None:
    old = setup.copy(base, tmp_path / "old")
    (old / "open.scrub" / "manifest.sig").unlink()
    refused(setup, old, tmp_path / "out", "open.scrub/manifest.sig: missing")
    (old / "open.scrub" / "manifest.sig").write_text("not base64 at all\n")
    refused(setup, old, tmp_path / "out2",
            "open.scrub/manifest.json: the signature does not verify")


def test_another_variants_signed_manifest_is_refused(setup: Setup, base: Path,
                                                     tmp_path: Path) -> None:
    """Both manifests are genuine, but ``open`` now carries ``safe``'s (fewer rows kept)."""
    old = setup.copy(base, tmp_path / "old")
    for name in ("manifest.json", "manifest.sig"):
        (old / "open.scrub" / name).write_bytes((old / "safe.scrub" / name).read_bytes())
    refused(setup, old, tmp_path / "out", "open.scrub/manifest.json is the manifest of another "
            "variant")


def test_a_release_signed_by_another_key_is_not_extended(setup: Setup, base: Path,
                                                         tmp_path: Path) -> None:
    """The signing key is what vouches for OLD: a build with another key cannot reuse it."""
    write_signing_keypair(tmp_path / "new.pem", tmp_path / "new.pub")
    refused(setup, base, tmp_path / "out", "manifest.json: the signature does not verify",
            "--signing-key", str(tmp_path / "new.pem"))
