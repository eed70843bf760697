"""LAION hash, sample key, caption-term, score and combined rules, on generated rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from scrub.apply import apply
from scrub.dataset import detect_roles
from scrub.engine.kernel import decide
from scrub.engine.plan import MatchPlan, plan_from_hashlists
from scrub.engine.reasons import Reason
from scrub.engine.rules import AllOf, CaptionTermRule, ScoreRule, Source
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import read_column

SOURCE = Source(id=0, label="policy", kind="policy", digest="", sensitive=False)


def removed(dataset: Path, output: Path, listing: Path) -> tuple[set[str], dict]:
    result = apply(lambda: plan_from_hashlists([read_hashlist(listing)]), dataset, output,
                   workers=1, progress=False)
    kept = set(pl.read_parquet(sorted(output.glob("*.parquet")))["key"].to_list())
    return set(read_column(dataset, "key").to_list()) - kept, result.report


def test_laion_hash_and_sample_key_rules(sample_dataset: Path, tmp_path: Path) -> None:
    hashes = read_column(sample_dataset, "hash")
    keys = read_column(sample_dataset, "key")
    listing = tmp_path / "l.csv"
    listing.write_text("type,value\n" + "".join(f"laion_hash,{h}\n" for h in hashes[10:15])
                       + "".join(f"sample_key,{k}\n" for k in keys[100:103]) + "laion_hash,7\n")
    gone, report = removed(sample_dataset, tmp_path / "out", listing)
    assert gone == set(keys[10:15].to_list()) | set(keys[100:103].to_list())
    assert report["removed_by_reason"] == {"laion_hash": 5, "sample_key": 3}


def batch(captions: list[str | None], punsafe: list[float | None] | None = None) -> pa.Table:
    columns = {"TEXT": captions}
    if punsafe is not None:
        columns["punsafe"] = punsafe
    return pa.table(columns)


def run(rule, table: pa.Table) -> list[bool]:
    plan = MatchPlan(sources=[SOURCE], rules=[rule])
    return decide(plan, table, detect_roles(table.schema)).drop.tolist()


def test_caption_terms_match_whole_words_in_any_case() -> None:
    rule = CaptionTermRule(["Ann Lee", "élodie", "c++"], Reason.CAPTION_TERM, SOURCE)
    captions = ["Photo of ANN LEE, 2019", "Joann Leeds at home", "ann lee", "ÉLODIE!",
                "elodie", "learn C++ today", "abc++", None, "annlee", "(Ann Lee)"]
    assert run(rule, batch(captions)) == [True, False, True, True, False, True, False, False,
                                          False, True]


def test_caption_terms_scale_to_many_terms() -> None:
    terms = [f"person {i}" for i in range(5000)]
    rule = CaptionTermRule(terms, Reason.CAPTION_TERM, SOURCE)
    captions = ["a picture of person 4999 smiling", "person 50000", "person 12"]
    assert run(rule, batch(captions)) == [True, False, True]


def test_score_threshold_and_the_re_laion_combination() -> None:
    keyword = CaptionTermRule(["nude"], Reason.CAPTION_TERM, SOURCE)
    unsafe = ScoreRule("punsafe", 0.95, Reason.NSFW, SOURCE)
    table = batch(["nude beach", "nude beach", "a cat", None, "nude"],
                  [0.99, 0.5, 0.99, 0.99, None])
    assert run(unsafe, table) == [True, False, True, True, False]
    assert run(AllOf([unsafe, keyword], Reason.NSFW, SOURCE), table) == \
        [True, False, False, False, False]


def test_score_rule_refuses_thresholds_out_of_range() -> None:
    with pytest.raises(ValueError):
        ScoreRule("punsafe", 1.5, Reason.NSFW, SOURCE)


def test_the_kernel_is_deterministic(sample_dataset: Path) -> None:
    table = pl.read_parquet(sorted(sample_dataset.glob("*.parquet"))[0]).to_arrow()
    plan = MatchPlan(sources=[SOURCE], rules=[ScoreRule("punsafe", 0.9, Reason.NSFW, SOURCE),
                                              CaptionTermRule(["cat", "dog"],
                                                              Reason.CAPTION_TERM, SOURCE)])
    roles = detect_roles(table.schema)
    first, second = decide(plan, table, roles), decide(plan, table, roles)
    assert np.array_equal(first.reasons, second.reasons) and first.reasons.any()
