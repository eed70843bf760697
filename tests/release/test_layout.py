"""The published layout of a release (format ``scrub-release/3``): each variant folder holds its
shards only, its companion ``VARIANT.scrub/`` everything else; ``release verify`` takes the
release folder (every variant) or one variant; ``scrub apply`` takes a variant folder as input;
releases of the previous layout (format 2) still verify and scrub."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from scrub.crypto import load_signing_key
from tests.helpers import expect_exit, expect_ok, run_cli
from tests.security.release_setup import Setup, make_setup


def beside(folder: Path) -> Path:
    """The documented companion folder of a variant: ``VARIANT.scrub`` beside it."""
    return folder.with_name(folder.name + ".scrub")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("layout"))


@pytest.fixture(scope="module")
def out(setup: Setup) -> Path:
    """A release of variants ``open`` and ``safe`` (with embeddings), as release build wrote
    it."""
    folder = setup.root / "out"
    built = setup.build(folder, "--release-id", "r-layout")
    expect_ok(built)
    return folder


def keys(folder: Path) -> list[str]:
    return pl.read_parquet(sorted(folder.glob("*.parquet")))["key"].to_list()


def apply(source: Path, output: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("apply", str(source), str(output), "--workers", "1", "--quiet",
                   *extra)


def md5_list(folder: Path, variant: Path, rows: list[int]) -> tuple[Path, set[str]]:
    """A hash list of the md5 of some rows of ``variant``; the keys of those rows."""
    frame = pl.read_parquet(sorted(variant.glob("part-*.parquet")))
    path = folder / "md5.txt"
    path.write_text("".join(f"{frame['md5'][r]}\n" for r in rows))
    return path, {frame["key"][r] for r in rows}


def test_apply_scrubs_a_release_variant_folder_and_only_its_shards(out: Path,
                                                                   tmp_path: Path) -> None:
    variant = out / "safe"
    listing, gone = md5_list(tmp_path, variant, [0, 5, 600])
    result = apply(variant, tmp_path / "copy", "--hashlist", str(listing), "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    manifest = json.loads((beside(variant) / "manifest.json").read_text())
    assert report["rows_in"] == manifest["totals"]["rows_out"]  # the shards' rows, no more
    assert [s["shard"] for s in report["per_shard"]] == [s["name"] for s in manifest["shards"]]
    assert keys(tmp_path / "copy") == [k for k in keys(variant) if k not in gone]


def test_apply_refuses_a_companion_or_a_release_folder_as_input(out: Path,
                                                                tmp_path: Path) -> None:
    listing, _ = md5_list(tmp_path, out / "safe", [1])
    for source, expected in ((beside(out / "safe"), f"give {out / 'safe'}"),
                             (out, f"give one of its variant folders ({out / 'open'}, "
                                   f"{out / 'safe'})")):
        result = apply(source, tmp_path / "copy", "--hashlist", str(listing))
        expect_exit(result, 2)
        assert expected in result.output and "internal error" not in result.output
        assert not (tmp_path / "copy").exists() and not beside(tmp_path / "copy").exists()


def test_verify_takes_the_release_folder_and_checks_every_variant(setup: Setup, out: Path,
                                                                  tmp_path: Path) -> None:
    ok = setup.verify(out)
    expect_ok(ok)
    assert "  open: ok, 3 shard(s)" in ok.stdout and "  safe: ok, 3 shard(s)" in ok.stdout
    assert "release r-layout: signed by ed25519:" in ok.stdout
    summary = json.loads(setup.verify(out, "--json").stdout)
    assert summary["ok"] and sorted(summary["variants"]) == ["open", "safe"]
    # one spoiled variant: named, the other still checked, exit 3
    copy = setup.copy(out, tmp_path / "spoiled")
    shard = copy / "safe" / "part-00001.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(1), shard)
    bad = setup.verify(copy)
    expect_exit(bad, 3)
    assert "  open: ok" in bad.stdout and f"  safe: FAILS: {shard}:" in bad.stdout
    assert f"release r-layout fails verification: {shard}:" in bad.output


@pytest.mark.parametrize("case", ["variant gone", "extra folder", "loose file", "staging",
                                  "companion gone"])
def test_verify_of_the_release_folder_refuses_what_is_not_the_release(
        setup: Setup, out: Path, tmp_path: Path, case: str) -> None:
    copy = setup.copy(out, tmp_path / "copy")
    if case == "variant gone":  # both folders of a variant: the others name it
        shutil.rmtree(copy / "open")
        shutil.rmtree(copy / "open.scrub")
        expected = f"{copy / 'open'}: missing"
    elif case == "extra folder":  # a folder of rows without a signed manifest
        shutil.copytree(copy / "open", copy / "extra")
        expected = f"{copy / 'extra'}: not part of the release"
    elif case == "loose file":
        (copy / "notes.parquet").write_bytes((copy / "open" / "part-00000.parquet").read_bytes())
        expected = f"{copy / 'notes.parquet'}: not part of the release"
    elif case == "staging":
        (copy / ".scrub-release").mkdir()
        expected = f"{copy / '.scrub-release'}: the staging folder of an unfinished build"
    else:  # the shards stay, their manifest is gone
        shutil.rmtree(copy / "safe.scrub")
        expected = f"{copy / 'safe'}: not part of the release"
    result = setup.verify(copy)
    assert result.exit_code == 3, (case, result.output)
    assert expected in result.output and "internal error" not in result.output


def to_previous_layout(out: Path, private: Path) -> None:
    """Lay ``out`` out as scrub-release/2 did: each variant's companion files inside its
    folder, one ``files`` listing, signed again with ``private`` (the release's key)."""
    for companion in sorted(out.glob("*.scrub")):
        variant = out / companion.name[: -len(".scrub")]
        manifest = json.loads((companion / "manifest.json").read_text())
        for entry in companion.iterdir():
            if entry.name not in ("manifest.json", "manifest.sig"):
                entry.rename(variant / entry.name)
        shutil.rmtree(companion)
        manifest["format"] = "scrub-release/2"
        manifest["files"].update(manifest.pop("companion_files"))
        manifest.pop("release_variants")
        body = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode()
        (variant / "manifest.json").write_bytes(body)
        signature = load_signing_key(private).sign(body)
        (variant / "manifest.sig").write_bytes(base64.b64encode(signature) + b"\n")


def test_a_release_of_the_previous_layout_still_verifies_and_scrubs(
        setup: Setup, out: Path, tmp_path: Path) -> None:
    old = setup.copy(out, tmp_path / "old")
    to_previous_layout(old, setup.private)
    assert (old / "safe" / "removals.parquet").is_file()  # beside the shards, as it was
    for target in (old / "safe", old):
        result = setup.verify(target)
        assert result.exit_code == 0, (target, result.output)
    (old / "safe" / "audit.html").write_text("edited")
    assert setup.verify(old).exit_code == 3
    # its variant folder as apply's input: the shards, not the removal list beside them
    listing, gone = md5_list(tmp_path, old / "safe", [3])
    result = apply(old / "safe", tmp_path / "copy", "--hashlist", str(listing), "--json")
    expect_ok(result)
    assert json.loads(result.stdout)["rows_in"] == len(keys(out / "safe"))
    assert keys(tmp_path / "copy") == [k for k in keys(out / "safe") if k not in gone]
    # it cannot be extended: a full build is needed
    refused = setup.build(tmp_path / "new", "--from", str(old))
    assert refused.exit_code == 2 and "made by an older scrub (scrub-release/2)" in refused.output


def test_a_previous_format_manifest_is_refused_in_a_companion_folder(
        setup: Setup, out: Path, tmp_path: Path) -> None:
    """An older manifest lists its variant folder's files only where it lies: one moved into a
    companion folder would leave the shards' folder unchecked."""
    old = setup.copy(out, tmp_path / "old")
    to_previous_layout(old, setup.private)
    for name in ("manifest.json", "manifest.sig"):
        beside(old / "safe").mkdir(exist_ok=True)
        (old / "safe" / name).rename(beside(old / "safe") / name)
    result = setup.verify(old / "safe")
    expect_exit(result, 3)
    assert "a scrub-release/2 manifest cannot lie in a companion folder" in result.output


def test_a_manifest_moved_beside_the_shards_is_refused(setup: Setup, out: Path,
                                                      tmp_path: Path) -> None:
    """A format-3 manifest lists two folders: taken out of its companion into the variant
    folder, it would leave the companion's files unchecked."""
    copy = setup.copy(out, tmp_path / "copy")
    for name in ("manifest.json", "manifest.sig"):
        (beside(copy / "open") / name).rename(copy / "open" / name)
    shutil.rmtree(beside(copy / "open"))
    result = setup.verify(copy / "open")
    expect_exit(result, 3)
    assert "a scrub-release/3 manifest cannot lie in a variant folder" in result.output
