"""Keys of a dataset row itself: LAION's int64 ``hash`` and the sample key."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.keys import int64_to_keys
from scrub.lists._keytype import KeyType
from scrub.lists._url_types import _HOST_BAD, text_digest_keys


class LaionHash(KeyType):
    """LAION's ``hash`` column: a signed 64-bit integer, written in decimal."""

    name = "laion_hash"
    width = 8
    target = "laion_hash"
    expected = "LAION's int64 hash (a decimal integer)"

    @classmethod
    def normalize(cls, value: str) -> str:
        text = value.strip()
        if not re.fullmatch(r"-?[0-9]{1,19}", text) or not -(2**63) <= int(text) < 2**63:
            raise ValueError(f"expected {cls.expected}")
        return str(int(text))

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        text = values.cast(pl.String).str.strip_chars()
        numbers = pl.select(pl.when(text.str.contains(r"^-?[0-9]{1,19}$"))
                            .then(text.cast(pl.Int64, strict=False))).to_series()
        valid = numbers.is_not_null().to_numpy()
        return int64_to_keys(numbers.fill_null(0).to_numpy()), valid

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        return int(canonical).to_bytes(8, "big", signed=True)

    @classmethod
    def column_keys(cls, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        if not pa.types.is_integer(column.type):
            return cls.normalize_column(pl.Series(column).cast(pl.String))
        numbers = pl.Series(column).cast(pl.Int64, strict=False)
        return int64_to_keys(numbers.fill_null(0).to_numpy()), numbers.is_not_null().to_numpy()

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("1438930970809551985", "1438930970809551985"),
                (" -6708179634213395235 ", "-6708179634213395235"), ("007", "7")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "0x1f", "1.5", "9223372036854775808", "12345678901234567890"]


class SampleKey(KeyType):
    """A sample's key (``key``, ``SAMPLE_ID``, ``uid``), compared as exact text."""

    name = "sample_key"
    width = 32
    target = "key"
    expected = "a sample key"

    @classmethod
    def normalize(cls, value: str) -> str:
        text = value.strip()
        if not text or len(text) > 256 or _HOST_BAD.search(text):
            raise ValueError(f"expected {cls.expected} (1-256 printable characters)")
        return text

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        text = values.cast(pl.String).str.strip_chars()
        ok = (text.str.len_chars().is_between(1, 256)
              & ~text.str.contains(r"[\x00-\x1f\x7f]")).fill_null(False)
        return pl.select(pl.when(ok).then(text)).to_series()

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        return text_digest_keys(cls.canonical_text_column(values))

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        return hashlib.sha256(canonical.encode("utf-8")).digest()

    @classmethod
    def column_keys(cls, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        return text_digest_keys(pl.Series(column).cast(pl.String))

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("000010023", "000010023"), (" 42 ", "42"), ("a b", "a b")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "   ", "x" * 300, "a\x00b"]

