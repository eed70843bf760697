"""Caption folding's tables come from shipped code points, worked out once per Unicode version,
and equal what a scan of every code point gives (the folding itself is checked against Python,
every code point, in tests/security/test_item04_caption_terms.py)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from scrub.lists import _captions, _fold_data


def _reference_tables() -> tuple[list[str], list[str], str, str, str]:
    """The tables as scrub built them before the shipped data: every code point classified."""
    keys: list[str] = []
    folds: list[str] = []
    ignorable = {code for first, last in _captions.DEFAULT_IGNORABLE
                 for code in range(first, last + 1)}
    unstable = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3), *ignorable}
    for code in range(0x80, 0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        ch = chr(code)
        if ch == ch.lower() and ch.casefold() != ch:
            keys.append(ch)
            folds.append(ch.casefold())
        if unicodedata.combining(ch) or unicodedata.normalize("NFKC", ch) != ch:
            unstable.add(code)
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            unstable.add(int(parts[1], 16))
    char_class = _captions._char_class
    return (keys, folds, char_class({ord(k) for k in keys}), char_class(ignorable),
            char_class(unstable))


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], list[str], str, str, str]:
    return _reference_tables()


def test_the_shipped_tables_equal_a_scan_of_every_code_point(reference: tuple) -> None:
    """Under the shipped data's Unicode version the tables come from it; under another, from
    a scan: the same tables either way."""
    _captions._fold_tables.cache_clear()
    assert _captions._fold_tables() == reference


def test_another_unicode_version_scans_every_code_point_for_the_same_tables(
        reference: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fold_data, "UNIDATA_VERSION", "0.0.0")
    _captions._fold_tables.cache_clear()
    try:
        assert _captions._fold_tables() == reference
    finally:
        _captions._fold_tables.cache_clear()


def test_the_shipped_module_is_what_the_generator_writes() -> None:
    if unicodedata.unidata_version != _fold_data.UNIDATA_VERSION:
        pytest.skip(f"the shipped data is for Unicode {_fold_data.UNIDATA_VERSION}, this Python "
                    f"has {unicodedata.unidata_version} (scanned instead); regenerate it with "
                    "scrub.lists._captions.render_fold_data() when the supported Pythons move")
    shipped = Path(_fold_data.__file__).read_text(encoding="utf-8")
    assert _captions.render_fold_data() == shipped
