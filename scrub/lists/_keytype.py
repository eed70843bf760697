"""The key-type contract and its registry (see :mod:`scrub.lists.types` for the types)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.keys import clean_hex_text, hex_to_keys
from scrub.urls import map_distinct

_HEX = "0123456789abcdef"


class KeyType(ABC):
    """One kind of list entry. Subclasses are registered with :func:`register`."""

    name: ClassVar[str]
    #: Width in bytes of the binary form used inside the engine.
    width: ClassVar[int]
    #: Column role matched by this type.
    target: ClassVar[str]
    #: Whether a bare value of this form may be typed by inference (no ``--type``).
    inferable: ClassVar[bool] = False
    #: Short description of the expected form, for error messages.
    expected: ClassVar[str]
    #: Whether keys are canonical text (matched by prefix) rather than fixed-width binary.
    textual: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def normalize(cls, value: str) -> str:
        """Return the canonical text form of ``value`` or raise ``ValueError(reason)``.

        The reason never contains the value.
        """

    @classmethod
    @abstractmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`normalize` to the engine's form.

        Returns ``(keys, valid)``: an ``(n, width)`` uint8 matrix (for textual types, a numpy
        object array of canonical strings) and a mask of the rows that normalised; invalid rows
        hold zeros (or None).
        """

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        """Vectorised :meth:`normalize`: the canonical text of each value, null where it is
        invalid (the ledger stores items in this form). This default calls :meth:`normalize`
        once per distinct value; types with a column form override it."""

        def one(value: str) -> str | None:
            try:
                return cls.normalize(value)
            except ValueError:
                return None

        return map_distinct(values.cast(pl.String), one)

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        """The key the engine compares for a canonical value (what :meth:`normalize_column`
        yields for it)."""
        return bytes.fromhex(canonical)

    @classmethod
    def column_keys(cls, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, valid)`` of a dataset column of this type's role (hex strings by default);
        a column of another Arrow type cannot match and is all invalid."""
        if (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_string_view(column.type)):
            return hex_to_keys(column, cls.width)
        return np.zeros((len(column), cls.width), dtype=np.uint8), np.zeros(len(column), bool)

    @classmethod
    @abstractmethod
    def examples(cls) -> list[tuple[str, str]]:
        """(raw value, canonical form) pairs that must normalise as shown."""

    @classmethod
    @abstractmethod
    def bad_examples(cls) -> list[str]:
        """Values that must be rejected."""


class HexDigestType(KeyType):
    """A fixed-width digest written as hex: case, surrounding whitespace and ``0x`` are forgiven."""

    @classmethod
    def normalize(cls, value: str) -> str:
        text = value.strip().lower()
        if text.startswith("0x"):
            text = text[2:]
        if len(text) != 2 * cls.width:
            raise ValueError(f"expected {cls.expected}, got {len(text)} characters")
        if any(ch not in _HEX for ch in text):
            raise ValueError(f"expected {cls.expected}, found a non-hex character")
        return text

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        # the dataset side (scrub.keys.hex_to_keys) forgives the same spellings
        return hex_to_keys(clean_hex_text(values).to_arrow(), cls.width)

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        text = clean_hex_text(values)
        valid = text.str.contains(f"^[0-9a-f]{{{2 * cls.width}}}$")
        return pl.select(pl.when(valid).then(text)).to_series()

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        canonical = ("0123456789abcdef" * 4)[: 2 * cls.width]
        return [
            (canonical, canonical),
            (canonical.upper(), canonical),
            (f"  0x{canonical}\t", canonical),
        ]

    @classmethod
    def bad_examples(cls) -> list[str]:
        canonical = ("0123456789abcdef" * 4)[: 2 * cls.width]
        return ["", canonical[:-1], canonical + "0", "g" + canonical[1:], canonical[:-2] + " 0"]


_REGISTRY: dict[str, type[KeyType]] = {}


def register(cls: type[KeyType]) -> type[KeyType]:
    """Class decorator adding a type to the registry; a second type of the same name is a bug."""
    if cls.name in _REGISTRY:
        raise TypeError(f"key type {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    _REGISTRY[cls.name] = cls
    return cls


def get_type(name: str) -> type[KeyType]:
    """The registered type called ``name``; ``KeyError`` when there is none."""
    return _REGISTRY[name]


def registered_types() -> dict[str, type[KeyType]]:
    """All registered types by name (a copy)."""
    return dict(_REGISTRY)


def inferable_by_width() -> dict[int, list[type[KeyType]]]:
    """Inferable hex types grouped by hex length; a length with two types is ambiguous."""
    grouped: dict[int, list[type[KeyType]]] = {}
    for cls in _REGISTRY.values():
        if cls.inferable:
            grouped.setdefault(2 * cls.width, []).append(cls)
    return grouped
