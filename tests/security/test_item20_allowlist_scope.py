"""Issue 19, item 20: an allow-list suppresses matches of the lists it names, and only those.

Deliberate bug this catches: ``AllowRule.covers`` ignoring ``suppresses`` (an allow-list then
clears every list of its type, so a row another partner lists survives).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scrub.apply import apply
from scrub.crypto import write_key_file
from scrub.engine.plan import plan_from_hashlists
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_ok, run_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("item20allow")
    return generate_dataset(root / "data", rows=1200, shards=2, seed=20, embeddings=False)


def write(path: Path, values: list[str]) -> Path:
    path.write_text("\n".join(values) + "\n")
    return path


def kept_md5(out: Path) -> set[str]:
    return {v for p in sorted(out.glob("*.parquet"))
            for v in pq.read_table(p, columns=["md5"]).column("md5").to_pylist()}


def test_allow_list_clears_only_the_list_it_names_through_the_store(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUB_HOME", str(tmp_path / "home"))
    key = tmp_path / "data.key"
    write_key_file(key)
    monkeypatch.setenv("SCRUB_KEY_FILE", str(key))
    md5 = read_column(dataset, "md5").to_list()
    only_a, both, only_b = md5[10:13], md5[700:702], md5[1100:1101]
    write(tmp_path / "a.txt", only_a + both)
    write(tmp_path / "b.txt", both + only_b)
    # known false positives of partner A: one row only A lists, one both partners list
    write(tmp_path / "fp.txt", [only_a[0], both[0]])
    for args in (("a.txt", "--name", "partner-a"), ("b.txt", "--name", "partner-b"),
                 ("fp.txt", "--name", "fp-of-a", "--kind", "allow", "--suppresses",
                  "partner-a")):
        result = run_cli("lists", "import", tmp_path / args[0], *args[1:], "--source", "org",
                        "--version", "1")
        expect_ok(result)
    result = run_cli("apply", dataset, tmp_path / "out", "--list", "partner-a", "--list",
                    "partner-b", "--workers", "1", "--quiet", "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    kept = kept_md5(tmp_path / "out")
    assert only_a[0] in kept  # A's false positive, listed by A alone: kept
    assert both[0] not in kept  # B lists it too, and nothing allows it for B: removed
    assert not (set(only_a[1:]) | set(both) | set(only_b)) & kept
    assert report["rows_removed"] == 5
    assert report["suppressed_by_allowlist"] == {"partner-a@1": 2}


def test_allow_list_clears_only_the_list_it_names_in_the_engine(dataset: Path,
                                                                tmp_path: Path) -> None:
    md5 = read_column(dataset, "md5").to_list()
    a = read_hashlist(write(tmp_path / "a.txt", md5[20:24]))
    b = read_hashlist(write(tmp_path / "b.txt", md5[22:26]))
    fp = read_hashlist(write(tmp_path / "fp.txt", [md5[20], md5[22]]))
    result = apply(plan_from_hashlists([a, b], allow=[(fp, ["a.txt"])]), dataset,
                   tmp_path / "out", workers=1, progress=False)
    kept = kept_md5(tmp_path / "out")
    assert md5[20] in kept and md5[22] not in kept
    assert result.report["rows_removed"] == 5  # 21..25
    assert result.report["removed_by_list"] == {"a.txt": 2, "b.txt": 4}
    assert result.report["suppressed_by_allowlist"] == {"a.txt": 2}
