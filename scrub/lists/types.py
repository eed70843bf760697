"""Hash and key types, one class each, in a registry.

After python-threatexchange's signal types: a type has a ``name``, normalises a value or rejects it
with a reason (never with the value itself: lists can be sensitive), carries example values that the
shared test base checks, and says which dataset column it is matched against.

A type's ``target`` names the column role it matches (see ``scrub.dataset``): ``md5``/``sha1``/
``sha256`` for hashes of image bytes, ``url`` for hashes of the URL. ``url_digest`` names the digest
applied to the URL before comparing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import polars as pl

from scrub.keys import hex_to_keys

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

    @classmethod
    @abstractmethod
    def normalize(cls, value: str) -> str:
        """Return the canonical text form of ``value`` or raise ``ValueError(reason)``.

        The reason never contains the value.
        """

    @classmethod
    @abstractmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`normalize` to the binary form.

        Returns ``(keys, valid)``: an ``(n, width)`` uint8 matrix and a mask of the rows that
        normalised; invalid rows hold zeros.
        """

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
        text = values.cast(pl.String).str.strip_chars().str.to_lowercase().str.strip_prefix("0x")
        return hex_to_keys(text.to_arrow(), cls.width)

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


@register
class Md5(HexDigestType):
    """MD5 of the image bytes."""

    name = "md5"
    width = 16
    target = "md5"
    inferable = True
    expected = "an md5 digest (32 hex digits)"


@register
class Sha1(HexDigestType):
    """SHA-1 of the image bytes."""

    name = "sha1"
    width = 20
    target = "sha1"
    inferable = True
    expected = "a sha1 digest (40 hex digits)"


@register
class Sha256(HexDigestType):
    """SHA-256 of the image bytes."""

    name = "sha256"
    width = 32
    target = "sha256"
    inferable = True
    expected = "a sha256 digest (64 hex digits)"


class UrlDigestType(HexDigestType):
    """A digest of the URL's UTF-8 bytes, exactly as stored in the dataset."""

    target = "url"
    url_digest: ClassVar[str]


@register
class UrlMd5(UrlDigestType):
    """MD5 of the URL."""

    name = "url_md5"
    width = 16
    url_digest = "md5"
    expected = "an md5 digest of a URL (32 hex digits)"


@register
class UrlSha1(UrlDigestType):
    """SHA-1 of the URL."""

    name = "url_sha1"
    width = 20
    url_digest = "sha1"
    expected = "a sha1 digest of a URL (40 hex digits)"


@register
class UrlSha256(UrlDigestType):
    """SHA-256 of the URL."""

    name = "url_sha256"
    width = 32
    url_digest = "sha256"
    expected = "a sha256 digest of a URL (64 hex digits)"
