"""A release after a new request: ``release diff`` names the rows it removed, and a rebuild
``--from`` the previous release reuses the untouched shards (hard links) and equals a full
build; a request withdrawn since is refused."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from scrub.layout import companion
from scrub.urls import canonical_url
from tests.helpers import expect_ok, run_cli
from tests.release.planted import (  # noqa: F401 (fixtures)
    add_verified,
    build,
    built,
    kept_keys,
    setup,
)

pytestmark = pytest.mark.slow


def test_diff_names_the_rows_a_new_request_removed(setup: dict, built: Path,
                                                   tmp_path: Path) -> None:

    before = build(setup, tmp_path / "a", "--no-ledger-update", "--release-id", "a")
    expect_ok(before)
    whole = setup["whole"]
    target = whole["URL"][int(setup["plan"]["pending"][0]) + 1]
    add_verified(setup, "copyright", "cy@example.org", target)
    after = build(setup, tmp_path / "b", "--no-ledger-update", "--release-id", "b")
    expect_ok(after)
    same = [u for u in whole["URL"].to_list() if canonical_url(u) == canonical_url(target)]
    result = run_cli("release", "diff", str(tmp_path / "a" / "research"),
                     str(tmp_path / "b" / "research"), "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    assert (report["old"], report["new"]) == ("a", "b")
    assert report["removed"] == len(same) and report["added"] == 0
    assert report["by_reason"]["copyright"] == {"old": 0, "new": len(same)}


def test_an_incremental_rebuild_reuses_untouched_shards_and_equals_a_full_one(
        setup: dict, built: Path, tmp_path: Path) -> None:

    base = build(setup, tmp_path / "base", "--no-ledger-update", "--release-id", "base")
    expect_ok(base)
    shards = sorted(p.name for p in setup["data"].glob("*.parquet"))
    in_shard_2 = pl.read_parquet(setup["data"] / shards[2])["URL"][17]
    ledger, new = add_verified(setup, "safety", "di@example.org", in_shard_2)
    incremental = build(setup, tmp_path / "inc", "--no-ledger-update", "--release-id", "inc",
                        "--from", str(tmp_path / "base"))
    expect_ok(incremental)
    full = build(setup, tmp_path / "full", "--no-ledger-update", "--release-id", "inc")
    expect_ok(full)
    for variant in ("research", "research-safe"):
        inc, whole, before = (tmp_path / d / variant for d in ("inc", "full", "base"))
        for index, name in enumerate(shards):
            for relative in (name, f"../{variant}.scrub/img_emb/img_emb_{index}.npy"):
                assert (inc / relative).read_bytes() == (whole / relative).read_bytes()
                reused = (inc / relative).stat().st_ino == (before / relative).stat().st_ino
                assert reused == (name != shards[2]), (variant, relative)
        audit_inc = json.loads((companion(inc) / "audit.json").read_text())
        audit_full = json.loads((companion(whole) / "audit.json").read_text())
        for field in ("rows_out", "removed", "removed_by_reason", "removed_by_source"):
            assert audit_inc[field] == audit_full[field]
        ok = run_cli("release", "verify", str(inc), "--pubkey",
                     str(setup["root"] / "sign.pub"))
        expect_ok(ok)
        copy = tmp_path / f"copy-{variant}"
        applied = run_cli("apply", str(setup["data"]), str(copy), "--hashlist",
                          str(companion(inc) / "removals.parquet"), "--workers",
                          "1", "-q")
        assert applied.exit_code == 0 and kept_keys(copy) == kept_keys(inc)
    # nothing new since: every file linked from the previous release (no worker started)
    same = build(setup, tmp_path / "same", "--no-ledger-update", "--release-id", "same",
                 "--from", str(tmp_path / "inc"))
    expect_ok(same)
    for variant in ("research", "research-safe"):
        for index, name in enumerate(shards):
            for relative in (name, f"../{variant}.scrub/img_emb/img_emb_{index}.npy"):
                linked = tmp_path / "same" / variant / relative
                assert linked.stat().st_ino == (tmp_path / "inc" / variant / relative).stat().st_ino
        ok = run_cli("release", "verify", str(tmp_path / "same" / variant),
                     "--pubkey", str(setup["root"] / "sign.pub"))
        expect_ok(ok)
    # a request applied before and withdrawn since: no incremental path, a clear error
    ledger.transition(new, "withdraw", "alice")
    refused = build(setup, tmp_path / "again", "--no-ledger-update", "--from",
                    str(tmp_path / "inc"))
    assert refused.exit_code == 2 and "no longer verified" in refused.output
