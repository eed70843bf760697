"""Caption terms and the folding that makes captions and terms compare by meaning."""

from __future__ import annotations

import functools
import textwrap
import unicodedata
from collections.abc import Callable

import numpy as np
import polars as pl

from scrub.lists import _fold_data
from scrub.lists._keytype import KeyType


class CaptionTerm(KeyType):
    """A literal term (a person's name, a keyword), matched in captions as whole words by
    meaning rather than spelling: both sides without invisible characters, NFKC and
    case-folded (:func:`fold_text`), any run of Unicode whitespace between the words. Kept as
    text: folded, inner whitespace one space."""

    name = "caption_term"
    width = 0
    target = "caption"
    textual = True
    expected = "a caption term (1-200 characters)"

    @classmethod
    def normalize(cls, value: str) -> str:
        # the column form, so that a term reads the same here, in the ledger and in the engine
        text = cls.canonical_text_column(pl.Series([value], dtype=pl.String))[0]
        if text is None:
            raise ValueError(f"expected {cls.expected}")
        return str(text)

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        text = fold_terms(values)
        ok = (text.str.len_chars().is_between(1, 200)
              & ~text.str.contains(r"[\x00-\x1f\x7f]")).fill_null(False)
        return pl.select(pl.when(ok).then(text)).to_series()

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        text = cls.canonical_text_column(values)
        return text.to_numpy().astype(object), text.is_not_null().to_numpy()

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        return canonical

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("Jane  Doe", "jane doe"), (" ÉLODIE Martin ", "élodie martin"),
                ("E\u0301lodie\u00a0\n Martin", "élodie martin"), ("STRASSE", "strasse"),
                ("Straße", "strasse"), ("ΣΑΣ", "σασ"),
                ("\uff2a\uff41\uff4e\uff45\u200b D\u00adoe\u2069", "jane doe")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "   ", "x" * 201, "\u00a0\u3000", "\u200b\u00ad\ufe0f"]


#: A run of whitespace between words: Unicode White_Space (Rust's ``\s``) plus the
#: separators U+001C-U+001F, which Python's ``str.split()`` also splits on: the two sets are
#: then equal (every code point checked when this was written; the tests check each of
#: Python's whitespace characters between a term's words).
WHITESPACE_RUN = r"[\s\x1c-\x1f]+"


#: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): invisible characters a
#: renderer skips (zero-width space/joiner/non-joiner, word joiner, soft hyphen, combining
#: grapheme joiner, variation selectors, bidi controls, tag characters, Hangul fillers...).
#: Folding removes them, so that none can split a listed name. Python's ``unicodedata`` does
#: not expose the property, hence the table (as of Unicode 15; it rarely changes).
DEFAULT_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
                     (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
                     (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
                     (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                     (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))


@functools.lru_cache(maxsize=1)
def _fold_tables() -> tuple[list[str], list[str], str, str, str]:
    """What :func:`fold_text` needs beyond lower-casing: the characters lower-casing leaves but
    case folding changes (``ß`` -> ``ss``, ``ς`` -> ``σ``, ``ﬁ`` -> ``fi``...) with their
    folds, a regex class of them, a regex class of the default-ignorable characters, and a
    regex class of the characters that removing those or NFKC may change or combine: text
    without any of the latter is folded by lower-casing alone. From the shipped code points
    (:mod:`scrub.lists._fold_data`) when they were worked out for this Python's Unicode
    version, else from a scan of every code point (:func:`scan_fold_code_points`)."""
    if unicodedata.unidata_version == _fold_data.UNIDATA_VERSION:
        foldable = _code_points(_fold_data.FOLDABLE)
        unstable = _code_points(_fold_data.UNSTABLE)
    else:
        foldable, unstable = scan_fold_code_points()
    keys = [chr(code) for code in sorted(foldable)]
    ignorable = {code for first, last in DEFAULT_IGNORABLE for code in range(first, last + 1)}
    return (keys, [key.casefold() for key in keys], _char_class(foldable),
            _char_class(ignorable), _char_class(unstable))


def scan_fold_code_points() -> tuple[set[int], set[int]]:
    """The foldable and the unstable code points of :func:`_fold_tables`, worked out from
    ``unicodedata`` over every code point (~0.6 CPU-s): foldable, those lower-casing leaves but
    case folding changes; unstable, the default ignorables, those not NFKC on their own,
    combining marks, the second characters of canonical pairs, Hangul vowel and final jamo."""
    foldable: set[int] = set()
    ignorable = {code for first, last in DEFAULT_IGNORABLE for code in range(first, last + 1)}
    unstable = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3), *ignorable}
    for code in range(0x80, 0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        ch = chr(code)
        if ch == ch.lower() and ch.casefold() != ch:
            foldable.add(code)
        if unicodedata.combining(ch) or unicodedata.normalize("NFKC", ch) != ch:
            unstable.add(code)
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):  # a canonical pair's second
            unstable.add(int(parts[1], 16))
    return foldable, unstable


def _code_points(ranges: str) -> set[int]:
    """The code points of a string of hex ranges (``"DF 149-14A"``)."""
    codes: set[int] = set()
    for span in ranges.split():
        first, _, last = span.partition("-")
        codes.update(range(int(first, 16), int(last or first, 16) + 1))
    return codes


def render_fold_data() -> str:
    """The source of :mod:`scrub.lists._fold_data` for this Python's Unicode version (run
    ``python -c "from scrub.lists._captions import render_fold_data as r; print(r(), end='')"
    > scrub/lists/_fold_data.py`` after a Python upgrade; a test says when)."""
    foldable, unstable = scan_fold_code_points()
    return (f'{_FOLD_DATA_DOC}\n#: The Unicode version these were worked out for.\n'
            f"UNIDATA_VERSION = \"{unicodedata.unidata_version}\"\n"
            "#: Characters lower-casing leaves but case folding changes.\n"
            f"FOLDABLE = {_ranges_literal(foldable)}\n"
            "#: Characters that removing default ignorables or NFKC may change or combine.\n"
            f"UNSTABLE = {_ranges_literal(unstable)}\n")


_FOLD_DATA_DOC = '''"""The code points caption folding treats specially (generated).

:func:`scrub.lists._captions.scan_fold_code_points` over every code point costs ~0.6 CPU-s in
each process that folds a non-ASCII caption; these are its results, used while Python's
``unicodedata`` has this version (else the scan runs). Written by
``scrub.lists._captions.render_fold_data``. Hex code points, ``first-last`` ranges or single
ones, separated by spaces.
"""
'''


def _ranges_literal(codes: set[int]) -> str:
    """A parenthesised string literal of ``codes`` as hex ranges, in lines within 100."""
    spans: list[str] = []
    ordered = sorted(codes)
    start = prev = ordered[0]
    for code in [*ordered[1:], -1]:
        if code != prev + 1:
            spans.append(f"{start:X}" + (f"-{prev:X}" if prev > start else ""))
            start = code
        prev = code
    lines = textwrap.wrap(" ".join(spans), 90, break_on_hyphens=False)
    return "(\n" + "\n".join(f'    "{line} "' for line in lines) + "\n)"


def _char_class(codes: set[int]) -> str:
    """A regex class of the code points ``codes``, as ranges."""
    spans: list[str] = []
    ordered = sorted(codes)
    start = prev = ordered[0]
    for code in ordered[1:] + [-1]:
        if code != prev + 1:
            spans.append(f"\\x{{{start:X}}}" + (f"-\\x{{{prev:X}}}" if prev > start else ""))
            start = code
        prev = code
    return "[" + "".join(spans) + "]"


def fold_text(values: pl.Series) -> pl.Series:
    """Text as captions and caption terms are compared, a whole column at once, close to
    Unicode's NFKC_Casefold: default-ignorable characters removed (:data:`DEFAULT_IGNORABLE`),
    NFKC, case-folded, NFKC again (``normalize("NFKC", normalize("NFKC", v).casefold())`` with
    ``v`` stripped of ignorables). So ``E`` + combining acute, ``É`` and ``é`` read alike, and
    ``ß`` and ``SS``; so do a name with a zero-width space, soft hyphen or bidi control inside
    and the name, and fullwidth, mathematical bold or circled letters and plain ones.

    Every value is lower-cased (for ASCII that is all). Only the values holding a character
    that removal or NFKC may change are normalised (before, and after folding), and only those
    holding one that folding changes beyond lower-casing are folded with a table: polars' NFKC
    costs ~1 us a value, a check a tenth of that. (Lower-casing NFKC text without such
    characters gives NFKC text: only U+0130 lowers to a combining mark, after an ``i`` it
    cannot join.) Hyphens and underscores are kept: they are visible, and words joined by
    them are one word to the whole-word match.
    """
    text = values.cast(pl.String)
    lowered = text.str.to_lowercase()
    wide = (text.str.len_bytes() != text.str.len_chars()).fill_null(False)
    if not bool(wide.any()):
        return lowered
    keys, folds, foldable, ignorable, unstable = _fold_tables()
    rows = wide.arg_true()
    original, some = text.gather(rows), lowered.gather(rows)
    redo = original.str.contains(unstable).fill_null(False)
    some = _where(some, redo, lambda _: original.filter(redo).str.replace_all(ignorable, "")
                  .str.normalize("NFKC").str.to_lowercase())
    folded = some.str.contains(foldable).fill_null(False)
    some = _where(some, folded, lambda v: v.str.replace_many(keys, folds))
    again = (redo | folded) & some.str.contains(unstable).fill_null(False)
    some = _where(some, again, lambda v: v.str.normalize("NFKC"))
    return lowered.scatter(rows, some)


def _where(values: pl.Series, mask: pl.Series,
           change: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``change`` applied to the values where ``mask`` holds (it is costly), the others kept."""
    rows = mask.fill_null(False).arg_true()
    if len(rows) == 0:
        return values
    return values.scatter(rows, change(values.gather(rows)))


def fold_terms(values: pl.Series) -> pl.Series:
    """Caption terms (or captions) as they are matched: :func:`fold_text`, each run of
    whitespace one space, none at the ends."""
    return fold_text(values).str.replace_all(WHITESPACE_RUN, " ").str.strip_chars(" ")
