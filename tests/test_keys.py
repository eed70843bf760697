"""Hex decoding of Arrow columns and the sorted key set, against plain Python."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from scrub.keys import KeySet, digest_keys, hex_to_keys, int64_to_keys, keys_to_hex, unique_keys


def test_hex_to_keys_decodes_valid_rows_and_flags_the_rest() -> None:
    values = ["00ff", "ABcd", None, "0g00", "123", "12345", ""]
    keys, valid = hex_to_keys(pa.array(values), 2)
    assert valid.tolist() == [True, True, False, False, False, False, False]
    assert keys[0].tolist() == [0, 255]
    assert keys[1].tolist() == [0xAB, 0xCD]
    assert not keys[~valid].any()


def test_hex_to_keys_handles_sliced_and_large_string_arrays() -> None:
    arr = pa.array(["aa", "bb", "cc", "dd"], type=pa.large_string()).slice(1, 2)
    keys, valid = hex_to_keys(arr, 1)
    assert valid.all() and keys[:, 0].tolist() == [0xBB, 0xCC]
    keys, valid = hex_to_keys(pa.chunked_array([["aa"], [None, "ff"]]), 1)
    assert valid.tolist() == [True, False, True]


def test_keys_to_hex_round_trips() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 256, (100, 16), dtype=np.uint8)
    text = keys_to_hex(keys)
    back, valid = hex_to_keys(pa.array(text.astype(str)), 16)
    assert valid.all() and np.array_equal(back, keys)


def test_unique_keys_sorts_bytewise() -> None:
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 256, (500, 5), dtype=np.uint8)
    keys = np.concatenate([keys, keys[:50]])
    unique = unique_keys(keys)
    expected = sorted({bytes(k) for k in keys})
    assert [bytes(k) for k in unique] == expected


def test_int64_keys_keep_their_bit_patterns() -> None:
    values = np.array([-1, 0, 1, -(2**63)], dtype=np.int64)
    keys = int64_to_keys(values)
    assert [bytes(k) for k in keys] == [int(v).to_bytes(8, "big", signed=True) for v in values]


@settings(max_examples=60, deadline=None)
@given(
    width=st.sampled_from([1, 4, 8, 9, 16, 32]),
    members=st.integers(0, 300),
    queries=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    shared_prefix=st.booleans(),
)
def test_keyset_membership_equals_a_python_set(width: int, members: int, queries: int,
                                               seed: int, shared_prefix: bool) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, (members, width), dtype=np.uint8)
    if shared_prefix and members and width > 8:
        keys[:, :8] = keys[0, :8]  # every key shares its first 8 bytes: the slow path
    asked = rng.integers(0, 256, (queries, width), dtype=np.uint8)
    if members and queries:
        picks = rng.integers(0, members, queries // 2)
        asked[: len(picks)] = keys[picks]
    valid = rng.random(queries) < 0.9
    found = KeySet(keys).contains(asked, valid)
    truth = {bytes(k) for k in keys}
    expected = [bool(v) and bytes(q) in truth for q, v in zip(asked, valid, strict=False)]
    assert found.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(width=st.sampled_from([2, 8, 16, 32]), rows=st.integers(0, 400),
       seed=st.integers(0, 2**32 - 1), shared=st.integers(0, 4))
def test_unique_keys_equals_sorted_set_with_duplicates_and_prefix_ties(
        width: int, rows: int, seed: int, shared: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, (rows, width), dtype=np.uint8)
    if rows:
        keys = np.concatenate([keys, keys[rng.integers(0, rows, rows // 3)]])
        if shared and width > 8:
            keys[: len(keys) // 2, :8] = keys[0, :8]  # many keys share their first 8 bytes
    assert [bytes(k) for k in unique_keys(keys)] == sorted({bytes(k) for k in keys})


def test_partitioned_unique_equals_the_direct_one(monkeypatch) -> None:
    from scrub import keys as keys_module

    rng = np.random.default_rng(9)
    keys = rng.integers(0, 256, (3000, 16), dtype=np.uint8)
    keys = np.concatenate([keys, keys[:300]])
    keys[:40, :8] = keys[0, :8]
    direct = unique_keys(keys)
    monkeypatch.setattr(keys_module, "_PARTITION_ROWS", 100)
    assert np.array_equal(unique_keys(keys), direct)


@settings(max_examples=60, deadline=None)
@given(width=st.sampled_from([8, 16, 20, 32]), rows=st.integers(0, 60),
       seed=st.integers(0, 2**32 - 1), start=st.integers(0, 5))
def test_digest_keys_reads_every_stored_form_as_the_same_keys(width: int, rows: int, seed: int,
                                                              start: int) -> None:
    from scrub.keys import digest_keys

    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, (rows + start, width), dtype=np.uint8)
    nulls = rng.random(rows + start) < 0.2
    text = [None if n else h for n, h in zip(nulls, keys_to_hex(keys).astype(str), strict=False)]
    raw = [None if n else bytes(k) for n, k in zip(nulls, keys, strict=False)]
    forms = [pa.array(text, pa.string()), pa.array(text, pa.large_string()),
             pa.array(text, pa.string_view()), pa.array(text, pa.string()).dictionary_encode(),
             pa.array([t.upper() if t else t for t in text], pa.string()),
             pa.array(raw, pa.binary()), pa.array(raw, pa.large_binary()),
             pa.array(raw, pa.binary_view()), pa.array(raw, pa.binary(width)),
             pa.array([t.encode() if t else t for t in text], pa.binary(2 * width)),
             pa.array([t.encode() if t else t for t in text], pa.binary())]
    if width == 8:
        forms += [pa.array([None if n else int.from_bytes(bytes(k), "big")
                            for n, k in zip(nulls, keys, strict=False)], pa.uint64()),
                  pa.array([None if n else int.from_bytes(bytes(k), "big", signed=True)
                            for n, k in zip(nulls, keys, strict=False)], pa.int64())]
    for form in forms:
        found, valid = digest_keys(form.slice(start), width)
        assert valid.tolist() == (~nulls[start:]).tolist(), form.type
        assert np.array_equal(found[valid], keys[start:][~nulls[start:]]), form.type
        assert not found[~valid].any()


def test_index_of_gives_each_found_key_its_position() -> None:
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 256, (500, 16), dtype=np.uint8)
    keys[:50, :8] = keys[0, :8]  # first eight bytes shared: the verification walks a run
    index = KeySet(keys)
    asked = np.concatenate([keys[::7], rng.integers(0, 256, (30, 16), dtype=np.uint8)])
    at = index.index_of(asked)
    for row, position in zip(asked, at, strict=False):
        if position >= 0:
            assert bytes(index.keys[position]) == bytes(row)
        else:
            assert bytes(row) not in {bytes(k) for k in keys}
    assert (at[: len(keys[::7])] >= 0).all()


def test_hex_digests_are_forgiven_what_list_entries_are_forgiven() -> None:
    """Surrounding whitespace (Unicode spaces too), case and a 0x prefix, as the list parser
    strips them (red-team review of issue 19, finding 3); a binary column holding bytes that
    are not UTF-8 still reads its ASCII rows; anything else stays malformed."""
    digest = "00112233445566778899aabbccddeeff"
    spelt = [digest, f" {digest}\n", f"\u00a00X{digest.upper()}\u3000", f"\x1c0x{digest}",
             f"0x {digest}", f"{digest}\u200b", f'"{digest}"', None]
    expected = [True, True, True, True, False, False, False, False]
    for column in (pa.array(spelt, pa.string()), pa.array(spelt, pa.string_view()),
                   pa.array(spelt, pa.string()).dictionary_encode()):
        keys, valid = digest_keys(column, 16)
        assert valid.tolist() == expected
        assert {bytes(k).hex() for k in keys[valid]} == {digest}
    as_bytes = [None if v is None else v.encode() for v in spelt]
    keys, valid = digest_keys(pa.array(as_bytes, pa.binary()), 16)
    assert valid.tolist() == expected
    # beside a value that is not UTF-8, only the ASCII rows are read as text (not the no-break
    # spaces of the third)
    keys, valid = digest_keys(pa.array(as_bytes + [b"\xff\xfe" * 20], pa.binary()), 16)
    assert valid.tolist() == [True, True, False, True, False, False, False, False, False]
    assert {bytes(k).hex() for k in keys[valid]} == {digest}


def test_shipped_whitespace_is_what_str_isspace_calls_whitespace(monkeypatch) -> None:
    """The characters stripped around digests are shipped for one Unicode version (a scan of
    every code point in each worker cost up to 0.3 CPU-s); they equal the scan there, and
    under another version the scan is what is used."""
    import unicodedata

    from scrub import keys

    scanned = keys.scan_spaces()
    assert scanned == "".join(c for c in map(chr, range(0x110000)) if c.isspace())
    if unicodedata.unidata_version == keys._SPACES_VERSION:
        assert scanned == keys._SPACES
    keys.hex_spaces.cache_clear()
    monkeypatch.setattr(keys, "_SPACES", " ")
    monkeypatch.setattr(keys, "_SPACES_VERSION", "0.0.0")
    try:
        assert keys.hex_spaces() == scanned
    finally:
        keys.hex_spaces.cache_clear()
