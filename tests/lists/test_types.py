"""The shared test base: every registered key type against its own examples."""

from __future__ import annotations

import polars as pl
import pytest

from scrub.lists.types import KeyType, register, registered_types

TYPES = sorted(registered_types().items())


@pytest.mark.parametrize(("name", "key_type"), TYPES)
def test_examples_normalise_to_their_canonical_form(name: str, key_type: type[KeyType]) -> None:
    for raw, canonical in key_type.examples():
        assert key_type.normalize(raw) == canonical


@pytest.mark.parametrize(("name", "key_type"), TYPES)
def test_bad_examples_are_rejected_without_echoing_the_value(
        name: str, key_type: type[KeyType]) -> None:
    for bad in key_type.bad_examples():
        with pytest.raises(ValueError) as info:
            key_type.normalize(bad)
        if bad.strip():
            assert bad.strip() not in str(info.value)


@pytest.mark.parametrize(("name", "key_type"), TYPES)
def test_vectorised_normalisation_agrees_with_the_scalar_one(
        name: str, key_type: type[KeyType]) -> None:
    raws = [raw for raw, _ in key_type.examples()] + key_type.bad_examples()
    keys, valid = key_type.normalize_column(pl.Series(raws, dtype=pl.String))
    for i, raw in enumerate(raws):
        try:
            expected = key_type.normalize(raw)
        except ValueError:
            assert not valid[i], f"row {i} should be invalid"
            continue
        assert valid[i], f"row {i} should be valid"
        got = keys[i] if key_type.textual else bytes(keys[i])
        assert got == key_type.engine_form(expected)


ODD = ["", " ", "\t", "A\x1fB", "a\x00b", "\u00a0x\u2003y\u00a0", "ΣΑΣ", "0X" + "AB" * 16,
       "x" * 300, "https://Example.com/a b", "K\u212a", "  0x" + "0f" * 32 + "\n"]


@pytest.mark.parametrize(("name", "key_type"), TYPES)
def test_canonical_text_column_agrees_with_the_scalar_one(
        name: str, key_type: type[KeyType]) -> None:
    raws = [raw for raw, _ in key_type.examples()] + key_type.bad_examples() + ODD
    column = key_type.canonical_text_column(pl.Series(raws, dtype=pl.String)).to_list()
    for raw, got in zip(raws, column, strict=False):
        try:
            expected = key_type.normalize(raw)
        except ValueError:
            expected = None
        assert got == expected, f"{raw!r}"


def test_registry_rejects_a_second_type_of_the_same_name() -> None:
    existing = registered_types()["md5"]

    class Clash(existing):  # type: ignore[misc, valid-type]
        name = "md5"

    with pytest.raises(TypeError, match="already registered"):
        register(Clash)


def test_domain_columns_decided_by_the_suffix_rules_agree_with_tldextract() -> None:
    """The whole-column path for registrable domains against the scalar one (tldextract) on
    names under every kind of public suffix rule: exact, wildcard, exception, private,
    punycode, upper case, trailing dots, spaces, bare suffixes and non-names."""
    import random

    from scrub.lists.types import Domain
    from scrub.urls import plainly_registrable
    from scrub.urls._domains import _psl_rules

    exact, wild, exceptions = _psl_rules()
    rng = random.Random(3)
    labels = ["a", "www", "Example", "xn--bcher-kva", "x-y", "-bad", "bad-", "a_b", "1", "f.b"]
    values: list[str | None] = []
    for suffix in exact.sample(600, seed=2).to_list() + wild.to_list() + exceptions.to_list():
        label = rng.choice(labels)
        values += [f"{label}.{suffix}", suffix, f"{label}.{suffix.upper()}.",
                   f" {label}.{suffix}", f"{label}.{suffix}..", f"x.{label}.{suffix}"]
    values += ["www.ck", "x.www.ck", "foo.ck", "a.city.kitakyushu.jp", "example.co.uk", None]
    column = Domain.canonical_column(pl.Series(values, dtype=pl.String)).to_list()
    expected = [Domain.canonical(v) if v is not None else None for v in values]
    assert column == expected
    hosts = pl.Series(["example.com", "co.uk", "x.www.ck", "a.b.sch.uk"])
    assert plainly_registrable(hosts).to_list() == [True, False, False, False]
