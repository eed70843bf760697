"""The multi-index Hamming search equals brute force: ThreatExchange's vectors and random codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrub.engine.hamming import HammingIndex, Matches, brute_force

PDQ = Path(__file__).resolve().parent.parent / "data" / "pdq"


def read_hashes(name: str) -> np.ndarray:
    lines = [line.strip() for line in (PDQ / name).read_text().splitlines() if line.strip()]
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in lines), dtype=np.uint8).reshape(-1, 32)


def pairs(matches: Matches) -> set[tuple[int, int, int]]:
    return set(zip(matches.query.tolist(), matches.entry.tolist(), matches.distance.tolist(),
                   strict=True))


@pytest.fixture(scope="module")
def haystack_index() -> tuple[HammingIndex, np.ndarray, np.ndarray]:
    haystack, needles = read_hashes("haystack.txt"), read_hashes("needles.txt")
    return HammingIndex(haystack), haystack, needles


@pytest.mark.parametrize("radius", range(32))
def test_threatexchange_needles_equal_brute_force_at_every_radius(haystack_index,
                                                                  radius: int) -> None:
    index, haystack, needles = haystack_index
    assert pairs(index.search(needles, radius)) == pairs(brute_force(haystack, needles, radius))


def test_the_needles_do_find_neighbours(haystack_index) -> None:
    index, _, needles = haystack_index
    assert len(index.search(needles, 31).query) > 0  # the comparison above is not vacuous


def flip(rng: np.random.Generator, code: np.ndarray, bits: int) -> np.ndarray:
    out = code.copy()
    for bit in rng.choice(code.size * 8, bits, replace=False):
        out[bit // 8] ^= 1 << (bit % 8)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 400), width=st.sampled_from([8, 32]),
       radius=st.integers(0, 40), shared=st.booleans())
def test_random_lists_and_near_duplicates_equal_brute_force(seed: int, size: int, width: int,
                                                            radius: int, shared: bool) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, (size, width), dtype=np.uint8)
    if shared:
        keys[: size // 2, :4] = keys[0, :4]  # crowded buckets
    limit = min(radius, width * 8)
    queries = np.stack([flip(rng, keys[rng.integers(0, size)], int(rng.integers(0, limit + 1)))
                        for _ in range(30)] + [rng.integers(0, 256, width, dtype=np.uint8)])
    valid = rng.random(len(queries)) < 0.9
    got = HammingIndex(keys).search(queries, radius, valid)
    want = brute_force(keys, queries, radius)
    keep = valid[want.query]
    assert pairs(got) == pairs(Matches(want.query[keep], want.entry[keep], want.distance[keep]))


def test_every_planted_near_duplicate_is_found() -> None:
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 256, (50_000, 32), dtype=np.uint8)
    sources = rng.integers(0, len(keys), 500)
    queries = np.stack([flip(rng, keys[s], int(rng.integers(0, 32))) for s in sources])
    found = HammingIndex(keys).search(queries, 31)
    hits = set(zip(found.query.tolist(), found.entry.tolist(), strict=True))
    assert all((i, int(s)) in hits for i, s in enumerate(sources))


def test_mismatched_widths_are_refused() -> None:
    index = HammingIndex(np.zeros((3, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="bits"):
        index.search(np.zeros((1, 8), dtype=np.uint8), 4)
