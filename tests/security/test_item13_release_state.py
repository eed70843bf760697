"""Item 13: nothing a release publishes ties a row to a source or a reason.

The per-shard build state (drop masks, counts per source and reason) that incremental rebuilds
need is kept out of the variant folders, sealed (so that even publishing OUT as a whole shows
nothing of it), and the signed manifest holds only a keyed tag of it; a state that was changed,
swapped or removed stops a ``--from`` rebuild (exit 3).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scrub.crypto import write_key_file
from scrub.layout import companion
from scrub.lists.store import ListStore
from tests.helpers import expect_ok
from tests.security.release_setup import Setup, make_setup, nsfw_policy

VARIANT = "research"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A release policy removing a sensitive partner list's rows (a few, in two shards) and
    rows with punsafe > 0.5."""
    root = tmp_path_factory.mktemp("item13")
    setup = make_setup(root, embeddings=False)
    shards = sorted(setup.data.glob("*.parquet"))
    md5s = (pl.read_parquet(shards[1])["md5"].gather([3, 50, 400]).to_list()
            + pl.read_parquet(shards[2])["md5"].gather([7, 9]).to_list())
    (root / "partner.txt").write_text("\n".join(md5s + [f"{i:032x}" for i in range(20)]) + "\n")
    key = write_key_file(root / "data.key")
    ListStore(root / "store").import_list(root / "partner.txt", name="partner-md5",
                                          source="partner", version="1", key=key)
    setup.policies = [nsfw_policy(root, VARIANT, 0.5, "[lists]", 'names = ["partner-md5"]')]
    return setup


def extra(setup: Setup) -> list[str]:
    return ["--store", str(setup.root / "store"), "--key-file", str(setup.root / "data.key")]


@pytest.fixture(scope="module")
def out(setup: Setup) -> Path:
    out = setup.root / "out"
    result = setup.build(out, "--release-id", "r13", *extra(setup))
    expect_ok(result)
    return out


def drop_masks(setup: Setup, variant: Path) -> dict[str, np.ndarray]:
    """Per input shard, which of its rows the variant dropped (public: input minus output)."""
    masks = {}
    for shard in sorted(setup.data.glob("*.parquet")):
        keys = pl.read_parquet(shard)["key"]
        kept = pl.read_parquet(variant / shard.name)["key"]
        masks[shard.name] = (~keys.is_in(kept.implode())).to_numpy()
    return masks


def test_a_published_variant_holds_the_release_files_only(setup: Setup, out: Path) -> None:
    variant = out / VARIANT
    found = {p.relative_to(variant).as_posix() for p in variant.rglob("*")}
    shards = {p.name for p in setup.data.glob("*.parquet")}
    assert found == shards
    beside = {p.relative_to(companion(variant)).as_posix() for p in companion(variant).rglob("*")}
    assert beside == {"audit.json", "audit.html", "manifest.json", "manifest.sig",
                      "removals.parquet"}


def test_nothing_under_out_ties_a_row_to_a_source_or_a_reason(setup: Setup, out: Path) -> None:
    variant = out / VARIANT
    masks = drop_masks(setup, variant)
    assert sum(int(m.sum()) for m in masks.values()) > 20  # NSFW and partner rows went
    audit = json.loads((companion(variant) / "audit.json").read_text())
    labels = [label.encode() for label in audit["removed_by_source"]]
    assert any(b"partner-md5" in label for label in labels)
    for path in (p for p in out.rglob("*") if p.is_file()):
        body = path.read_bytes()
        for name, mask in masks.items():
            packed = np.packbits(mask).tobytes()
            assert base64.b64encode(packed) not in body, (path, name)
            assert packed not in body, (path, name)
        if path.parent == companion(variant) and path.name in ("audit.json", "audit.html"):
            continue  # the public report: release-wide counts per source
        assert b"by_source" not in body and b"by_reason" not in body.replace(
            b"removed_by_reason", b""), path
        if path.name != "manifest.json":  # the manifest names the lists it used
            assert not any(label in body for label in labels), path
    # the published JSON breaks nothing down per shard beyond rows in and out
    manifest = json.loads((companion(variant) / "manifest.json").read_text())
    for entry in manifest["shards"] + audit["per_shard"]:
        assert not any(isinstance(v, (dict, list)) or "by" in k for k, v in entry.items())


def test_the_manifest_holds_a_keyed_tag_of_each_state(setup: Setup, out: Path) -> None:
    """A plain sha256 of the state would let whoever guesses a state confirm it; the tag
    is keyed: it is the digest of no file."""
    manifest = json.loads((companion(out / VARIANT) / "manifest.json").read_text())
    digests = {hashlib.sha256(p.read_bytes()).hexdigest()
               for p in out.rglob("*") if p.is_file()}
    tags = [v for entry in manifest["shards"] for k, v in entry.items()
            if k != "sha256" and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)]
    assert len(tags) == len(manifest["shards"])
    assert not digests & set(tags)


def test_a_changed_swapped_or_missing_state_stops_a_rebuild(setup: Setup, out: Path,
                                                           tmp_path: Path) -> None:
    ok = setup.build(tmp_path / "ok", "--from", str(out), *extra(setup))
    expect_ok(ok)
    assert setup.verify(tmp_path / "ok" / VARIANT).exit_code == 0

    def flip(states: list[Path]) -> None:
        body = bytearray(states[1].read_bytes())
        body[len(body) // 2] ^= 1
        states[1].write_bytes(bytes(body))

    def swap(states: list[Path]) -> None:
        first, second = states[0].read_bytes(), states[1].read_bytes()
        states[0].write_bytes(second)
        states[1].write_bytes(first)

    for case, spoil, expected in (("flip", flip, "not the state the signed manifest names"),
                                  ("swap", swap, "not the state the signed manifest names"),
                                  ("gone", lambda s: s[2].unlink(), "missing")):
        old = setup.copy(out, tmp_path / f"old-{case}")
        states = sorted((old / ".scrub-state" / VARIANT).iterdir())
        assert len(states) == 3
        spoil(states)
        result = setup.build(tmp_path / case, "--from", str(old), *extra(setup))
        assert result.exit_code == 3, (case, result.output)
        assert expected in result.output and "internal error" not in result.output
        assert not (tmp_path / case / VARIANT).exists()
