"""Ledger rules at scale: one rule per (kind, item type) over every request, each hit row
attributed to exactly the requests whose own items match it, as one rule per request would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from scrub.dataset import detect_roles
from scrub.engine.attribution import AttributedRule
from scrub.engine.kernel import Decisions, decide
from scrub.engine.plan import REQUEST_REASONS, MatchPlan, _rule, add_ledger_rules
from scrub.engine.rules import Source
from scrub.lists.types import get_type
from scrub.urls import canonical_url, hosts_of, registrable_domains


def flip(hex_value: str, bits: list[int]) -> str:
    number = int(hex_value, 16)
    for bit in bits:
        number ^= 1 << bit
    return f"{number:064x}"


@pytest.fixture(scope="module")
def table(sample_dataset: Path):  # type: ignore[no-untyped-def]
    return pq.read_table(sorted(sample_dataset.glob("*.parquet"))[0])


def items_for(table) -> list[tuple[int, str, str, str]]:  # type: ignore[no-untyped-def]
    """Requests naming rows of the table by every item type, some items shared between
    requests (of the same and of other kinds), plus many requests that match nothing."""
    rows = table.to_pylist()
    url = canonical_url(rows[3]["URL"])
    host = hosts_of(pl.Series([canonical_url(rows[20]["URL"])])).item()
    domain = registrable_domains(pl.Series([host])).item()
    folder = canonical_url(rows[40]["URL"]).rsplit("/", 1)[0] + "/"
    words = rows[8]["TEXT"].split()
    term = " ".join(words[:2]).lower()
    items = [
        (1, "gdpr_erasure", "url", url), (1, "gdpr_erasure", "caption_term", term),
        (1, "gdpr_erasure", "md5", rows[10]["md5"]),
        (2, "gdpr_erasure", "url", url), (2, "gdpr_erasure", "host", host),
        (3, "copyright", "domain", domain), (3, "copyright", "url_prefix", folder),
        (4, "safety", "pdq", flip(rows[50]["pdq"], [1, 9, 77, 200, 255])),
        (4, "safety", "md5", rows[10]["md5"]), (4, "safety", "sample_key", rows[60]["key"]),
        (5, "other", "sha256", rows[70]["sha256"]), (5, "other", "caption_term", words[0].lower()),
        (6, "copyright", "url_prefix", folder + "nothing-below/"),
    ]
    rng = np.random.default_rng(3)
    for request_id in range(7, 60):
        kind = ("gdpr_erasure", "copyright", "safety", "other")[request_id % 4]
        items.append((request_id, kind, "md5", rng.bytes(16).hex()))
        items.append((request_id, kind, "url", f"https://nowhere{request_id}.example/a.jpg"))
        items.append((request_id, kind, "caption_term", f"zz{request_id} qq"))
        items.append((request_id, kind, "pdq", rng.bytes(32).hex()))
    return items


def per_request_reference(table, items) -> dict[int, np.ndarray]:  # type: ignore[no-untyped-def]
    """Request id -> rows its own rules drop, one plan per request (the slow, obvious way)."""
    roles = detect_roles(table.schema)
    by_request: dict[int, list[tuple[str, str, str]]] = {}
    for request_id, kind, type_name, value in items:
        by_request.setdefault(request_id, []).append((kind, type_name, value))
    out = {}
    for request_id, entries in by_request.items():
        source = Source(id=0, label=f"request {request_id}", kind="request", digest="")
        plan = MatchPlan(sources=[source])
        for kind, type_name, value in entries:
            keys, valid = get_type(type_name).normalize_column(pl.Series([value]))
            plan.rules.append(_rule(type_name, keys[valid], source, None,
                                    REQUEST_REASONS[kind]))
        out[request_id] = decide(plan, table, roles).drop
    return out


@pytest.mark.slow
def test_ledger_rules_attribute_each_row_to_exactly_its_requests(table) -> None:  # type: ignore
    items = items_for(table)
    plan = MatchPlan()
    add_ledger_rules(plan, items, watermark=(1, "0" * 64))
    assert len(plan.sources) == 59
    assert all(isinstance(rule, AttributedRule) for rule in plan.rules)
    assert len(plan.rules) == 9  # one per item type, not per request or kind
    decisions: Decisions = decide(plan, table, detect_roles(table.schema))
    reference = per_request_reference(table, items)
    request_of = {s.id: int(s.label.split()[1]) for s in plan.sources}
    got = {request_of[source]: mask for source, mask in decisions.sources.items()}
    expected = {request: mask for request, mask in reference.items() if mask.any()}
    assert set(got) == set(expected) == {1, 2, 3, 4, 5}
    for request, mask in expected.items():
        assert np.array_equal(got[request], mask), f"request {request}"
    assert np.array_equal(decisions.drop, np.logical_or.reduce(list(expected.values())))
    # every kind's reason on its rows, and the perceptual evidence kept
    reasons = decisions.reasons
    for request, kind in ((1, "gdpr_erasure"), (3, "copyright"), (4, "safety"), (5, "other")):
        bit = np.uint32(REQUEST_REASONS[kind].mask)
        assert ((reasons[expected[request]] & bit) != 0).all()
    assert decisions.distance is not None and decisions.distance[50] == 5


def test_a_value_shared_by_two_requests_names_both(table) -> None:  # type: ignore
    url = canonical_url(table.column("URL")[3].as_py())
    items = [(10, "gdpr_erasure", "url", url), (11, "gdpr_erasure", "url", url),
             (12, "gdpr_erasure", "url", "https://elsewhere.example/")]
    plan = MatchPlan()
    add_ledger_rules(plan, items, watermark=(1, "0" * 64))
    assert len(plan.rules) == 1
    decisions = decide(plan, table, detect_roles(table.schema))
    hit_by = {plan.sources[s].label for s, mask in decisions.sources.items() if mask[3]}
    assert hit_by == {"request 10", "request 11"}


def test_the_incremental_url_prefilter_finds_every_spelling(table) -> None:  # type: ignore
    """Rows spelling a requested URL otherwise (case of scheme and host, default port, dot
    segments, %-escapes of plain characters, userinfo, a trailing dot, a fragment) match with
    the literal pre-filter of incremental rebuilds exactly as without it."""
    import pyarrow as pa

    base = "https://img.example.org/photos/cat-2024.jpg"
    spellings = [base, "HTTPS://IMG.Example.ORG/photos/cat-2024.jpg",
                 # issue 20: tabs and newlines (removed anywhere), backslashes, wrappers...
                 "https://img.exa\tmple.org/photos/cat-2024.jpg",
                 "https://img.example.org/photos/cat-\n2024.jpg",
                 "https://img.example.org\\photos\\cat-2024.jpg",
                 "https:img.example.org/photos/cat-2024.jpg",
                 "<URL:https://img.example.org/photos/cat-2024.jpg>",
                 "https://a@b@img.example.org/photos/cat-2024.jpg",
                 "https://img.example.org:+443/photos/cat-2024.jpg",
                 "https://img.example.org\u3002/photos/cat-2024.jpg",
                 "https://img.example.org@evil.example/photos/cat-2024.jpg",
                 "https://img.example.org:443/photos/./cat-2024.jpg",
                 "https://img.example.org/a/../photos/cat-2024.jpg",
                 "https://img.example.org/photos/cat%2D2024.jpg",
                 "https://IMG.example.org/photos/c%61t%2d2024.jpg",
                 "https://user@img.example.org/photos/cat-2024.jpg",
                 "https://img.example.org./photos/cat-2024.jpg#top",
                 "https://img.example.org/photos/cat-2024.jpg?",
                 " https://img.example.org/photos/cat-2024.jpg\t",
                 "https://img.ex%61mple.org/photos/cat-2024.jpg",
                 "https://IMG.EXAMPLE.ORG:443/photos/caf\u00e9/../cat-2024.jpg",
                 "https://b\u00fccher.example/photos/cat-2024.jpg",
                 "https://xn--bcher-kva.example/photos/cat-2024.jpg",
                 "https://img.example.org/photos/cat-2025.jpg",
                 "https://other.example.org/photos/cat-2024.jpg"]
    urls = table.column("URL").to_pylist()[: table.num_rows - len(spellings)] + spellings
    batch = table.set_column(table.schema.get_field_index("URL"), "URL",
                             pa.array(urls, pa.string()))
    items = [(1, "gdpr_erasure", "url", canonical_url(base)),
             (2, "gdpr_erasure", "url", canonical_url(urls[5])),
             (3, "gdpr_erasure", "url", canonical_url(spellings[-4]))]
    hits = []
    for prefilter in (False, True):
        plan = MatchPlan()
        add_ledger_rules(plan, items, watermark=(1, "0" * 64))
        for rule in plan.rules:
            rule.prefilter = prefilter  # type: ignore[attr-defined]
        hits.append(decide(plan, batch, detect_roles(batch.schema)).drop)
    assert np.array_equal(hits[0], hits[1])
    expected = {canonical_url(base), canonical_url(urls[5]), canonical_url(spellings[-4])}
    assert [i for i, u in enumerate(urls) if canonical_url(u) in expected] \
        == np.flatnonzero(hits[1]).tolist()
    assert hits[1][-len(spellings):].sum() >= 6
