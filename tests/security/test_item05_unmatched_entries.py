"""Issue 19, item 5: list entries that matched nothing are counted, per list.

``apply-report.json`` (and ``--json``) holds ``unmatched_entries``: per list, how many of its
entries matched no row of the whole dataset, merged over shards and over a resumed run. Only
public lists have those entries named (with ``--json``, never in the report file). Job state
records matched entries as keyed ids, never values. A list whose column is absent stays an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scrub.crypto import write_key_file
from scrub.keys import keys_to_hex
from scrub.layout import companion
from scrub.synthetic import generate_dataset, read_column
from scrub.urls import canonical_url, canonicalize_urls, hosts_of, registrable_domain
from tests.helpers import expect_ok, run_cli

ROWS, SHARDS = 3000, 3
#: Rows to match, one or more in every shard.
PICKED = [5, 900, 1001, 1999, 2500, 2999]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("item05")
    return generate_dataset(root / "data", rows=ROWS, shards=SHARDS, seed=5, embeddings=False)


def column(dataset: Path, name: str) -> list:
    return read_column(dataset, name).to_list()


def decoy_hex(n: int, width: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return keys_to_hex(rng.integers(0, 256, (n, width), dtype=np.uint8)).astype(str).tolist()


def write(path: Path, values: list[str]) -> Path:
    path.write_text("\n".join(values) + "\n")
    return path


def apply_json(dataset: Path, out: Path, *args: object) -> dict:
    result = run_cli("apply", dataset, out, *args, "--workers", "1", "--quiet", "--json")
    expect_ok(result)
    return json.loads(result.stdout)


def lists_of_every_kind(dataset: Path, folder: Path) -> tuple[list[object], dict[str, int]]:
    """(apply arguments, label -> entries that match nothing) for one list of each kind."""
    folder.mkdir()
    urls = column(dataset, "URL")
    canonical = [canonical_url(urls[i]) for i in PICKED]
    hosts = hosts_of(pl.Series(canonical)).to_list()
    args: list[object] = []
    expected: dict[str, int] = {}

    def add(name: str, type_name: str, values: list[str], unmatched: int) -> None:
        path = folder / name
        path.write_text("".join(json.dumps({"type": type_name, "value": v}) + "\n"
                                for v in values))
        args.extend(["--hashlist", path])
        expected[name] = unmatched

    md5 = column(dataset, "md5")
    add("md5.jsonl", "md5", [md5[i] for i in PICKED] + decoy_hex(9, 16, 1), 9)
    sha = column(dataset, "sha256")
    add("sha256.jsonl", "sha256", [sha[i].upper() for i in PICKED[:2]] + decoy_hex(4, 32, 2), 4)
    add("url.jsonl", "url", [urls[i] for i in PICKED[:3]]
        + ["https://never.example.org/x.jpg", "http://nowhere.example.net/y.png"], 2)
    add("host.jsonl", "host", hosts[:2] + ["no-such-host.example.org"], 1)
    domains = sorted({registrable_domain(h) for h in hosts[:2]})
    add("domain.jsonl", "domain", domains + ["no-such-domain-at-all.org"], 1)
    # Prefixes: a row's whole URL and that URL minus its last character match that row alone
    # (the rule keeps only the shorter: the longer one is matched as its child); its host's
    # root matches many rows; a deeper path that no row has is covered by the shorter ones yet
    # matched nothing, as did a prefix on an unknown host.
    whole, shorter = canonical[0], canonical[0][:-1]
    every = canonicalize_urls(read_column(dataset, "URL")).drop_nulls()
    assert int(every.str.starts_with(shorter).sum()) == 1
    root_prefix = "/".join(whole.split("/", 3)[:3]) + "/"
    add("prefix.jsonl", "url_prefix", [whole, shorter, root_prefix, shorter + "/no-such/",
                                       "https://unknown-host.example.org/a/"], 2)
    captions = column(dataset, "TEXT")
    word = captions[PICKED[0]].split()[0]
    add("terms.jsonl", "caption_term", [word, "zyxwvutsr qponmlk"], 1)
    pdq = column(dataset, "pdq")
    near = []
    for i in PICKED[:3]:  # 4 bits away from a row's PDQ
        code = bytearray(bytes.fromhex(pdq[i]))
        for bit in (1, 50, 100, 200):
            code[bit // 8] ^= 1 << (bit % 8)
        near.append(bytes(code).hex())
    add("pdq.jsonl", "pdq", near + decoy_hex(5, 32, 3), 5)
    hashes = column(dataset, "hash")
    add("laion.jsonl", "laion_hash", [str(hashes[i]) for i in PICKED] + ["12345", "-42"], 2)
    keys = column(dataset, "key")
    add("keys.jsonl", "sample_key", [keys[i] for i in PICKED[:2]] + ["no-such-key"], 1)
    return args, expected


def test_every_list_counts_the_entries_that_matched_no_row(dataset: Path,
                                                           tmp_path: Path) -> None:
    args, expected = lists_of_every_kind(dataset, tmp_path / "lists")
    report = apply_json(dataset, tmp_path / "out", *args)
    assert report["unmatched_entries"] == expected
    saved = json.loads((companion(tmp_path / "out") / "apply-report.json").read_text())
    assert saved["unmatched_entries"] == expected
    # Hand-made opt-out lists are public, as `lists import` stores them: their entries that
    # matched nothing are named with --json; every other list is sensitive: counted, never named.
    assert set(report["unmatched_entry_values"]) == {"domain.jsonl", "host.jsonl",
                                                     "prefix.jsonl", "url.jsonl"}
    summary = run_cli("apply", dataset, tmp_path / "again", *args, "--workers", "1", "--quiet")
    assert "entries of list md5.jsonl that matched no row: 9" in summary.stdout


def test_counts_merge_over_shards_and_a_resumed_run(dataset: Path, tmp_path: Path) -> None:
    md5 = column(dataset, "md5")
    listing = write(tmp_path / "partner.txt", [md5[i] for i in PICKED] + decoy_hex(11, 16, 4))
    out = tmp_path / "out"
    first = apply_json(dataset, out, "--hashlist", listing)
    assert first["unmatched_entries"] == {"partner.txt": 11}
    (out / "part-00001.parquet").unlink()  # that shard is redone, the others come from markers
    (companion(out) / "apply-report.json").unlink()
    again = apply_json(dataset, out, "--hashlist", listing)
    assert again["unmatched_entries"] == {"partner.txt": 11}
    assert again["rows_removed"] == len(PICKED)
    # Markers keep keyed ids: no list value in any spelling, and not the entries' positions.
    state = "".join(p.read_text() for p in (companion(out) / "done").glob("*.json"))
    for value in [md5[i] for i in PICKED]:
        assert value not in state and value.upper() not in state
    ids = [i for p in sorted((companion(out) / "done").glob("*.json"))
           for i in json.loads(p.read_text())["matched_entries"].get("partner.txt", [])]
    assert len(ids) == len(PICKED) and all(i >= 17 for i in ids)


def test_allow_list_entries_that_kept_nothing_are_counted(dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUB_HOME", str(tmp_path / "home"))
    key = tmp_path / "data.key"
    write_key_file(key)
    monkeypatch.setenv("SCRUB_KEY_FILE", str(key))
    md5 = column(dataset, "md5")
    write(tmp_path / "partner.txt", [md5[i] for i in PICKED] + decoy_hex(3, 16, 5))
    write(tmp_path / "fp.txt", [md5[PICKED[0]], md5[PICKED[1]]] + decoy_hex(2, 16, 6))
    for args in (("partner.txt", "--name", "partner"),
                 ("fp.txt", "--name", "known-fp", "--kind", "allow", "--suppresses", "partner")):
        result = run_cli("lists", "import", tmp_path / args[0], *args[1:], "--source", "org",
                        "--version", "1")
        expect_ok(result)
    report = apply_json(dataset, tmp_path / "out", "--list", "partner")
    assert report["rows_removed"] == len(PICKED) - 2
    assert report["unmatched_entries"] == {"partner@1": 3, "known-fp@1": 2}


def test_a_public_list_names_its_unmatched_entries_with_json_only(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUB_HOME", str(tmp_path / "home"))
    key = tmp_path / "data.key"
    write_key_file(key)
    monkeypatch.setenv("SCRUB_KEY_FILE", str(key))
    md5 = column(dataset, "md5")
    public_decoys = decoy_hex(4, 16, 7)
    secret_decoys = decoy_hex(3, 16, 8)
    write(tmp_path / "public.txt", [md5[i] for i in PICKED[:3]] + public_decoys)
    write(tmp_path / "secret.txt", [md5[i] for i in PICKED[3:]] + secret_decoys)
    for name, flag in (("public", "--public"), ("secret", "--sensitive")):
        result = run_cli("lists", "import", tmp_path / f"{name}.txt", "--name", name, "--source",
                        "org", "--version", "1", flag)
        expect_ok(result)
    report = apply_json(dataset, tmp_path / "out", "--list", "public", "--list", "secret")
    assert report["unmatched_entries"] == {"public@1": 4, "secret@1": 3}
    assert report["unmatched_entry_values"] == {"public@1": sorted(public_decoys)}
    saved = (companion(tmp_path / "out") / "apply-report.json").read_text()
    for value in public_decoys + secret_decoys:
        assert value not in saved
    summary = run_cli("apply", dataset, tmp_path / "out2", "--list", "public",
                     "--workers", "1", "--quiet")
    expect_ok(summary)
    assert not any(value in summary.output for value in public_decoys)


def test_a_list_whose_column_is_absent_stays_an_error(dataset: Path, tmp_path: Path) -> None:
    listing = write(tmp_path / "sha1.txt", decoy_hex(3, 20, 9))
    result = run_cli("apply", dataset, tmp_path / "out", "--hashlist", listing, "--workers", "1",
                    "--quiet")
    assert result.exit_code == 2
    assert "no column for role(s) sha1" in result.stderr
    assert not (companion(tmp_path / "out") / "apply-report.json").exists()


def test_entry_ids_depend_on_the_whole_list(dataset: Path, tmp_path: Path) -> None:
    """Two lists holding the same matched entry record different ids for it: an id says
    nothing about the entry to whoever lacks the list."""
    md5 = column(dataset, "md5")
    one = write(tmp_path / "one.txt", [md5[PICKED[0]]] + decoy_hex(2, 16, 10))
    two = write(tmp_path / "two.txt", [md5[PICKED[0]]] + decoy_hex(2, 16, 11))
    ids = {}
    for name, listing in (("one", one), ("two", two)):
        apply_json(dataset, tmp_path / name, "--hashlist", listing)
        marker = json.loads((companion(tmp_path / name) / "done" / "part-00000.parquet.json")
                            .read_text())
        ids[name] = marker["matched_entries"][listing.name]
    assert len(ids["one"]) == len(ids["two"]) == 1 and ids["one"] != ids["two"]


def test_public_lists_beside_ledger_requests(dataset: Path, tmp_path: Path) -> None:
    """Requests are sources without list entries: the report counts the lists' alone."""
    from scrub.apply import apply
    from scrub.engine.plan import add_ledger_rules, plan_from_hashlists
    from scrub.lists.hashlist import read_hashlist

    md5 = column(dataset, "md5")
    urls = column(dataset, "URL")
    decoys = decoy_hex(2, 16, 12)
    public = read_hashlist(write(tmp_path / "public.txt", [md5[PICKED[0]]] + decoys))
    plan = plan_from_hashlists([public], sensitive=[False])
    add_ledger_rules(plan, [(1, "gdpr_erasure", "url", urls[PICKED[1]])], watermark=(1, "x"))
    result = apply(plan, dataset, tmp_path / "out", workers=1, progress=False)
    assert result.report["rows_removed"] == 2
    assert result.report["unmatched_entries"] == {"public.txt": 2}
    assert result.unmatched_values == {"public.txt": sorted(decoys)}
