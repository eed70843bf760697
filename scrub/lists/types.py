"""Hash and key types, one class each, in a registry.

After python-threatexchange's signal types: a type has a ``name``, normalises a value or rejects it
with a reason (never with the value itself: lists can be sensitive), carries example values that the
shared test base checks, and says which dataset column it is matched against.

A type's ``target`` names the column role it matches (see ``scrub.dataset``): ``md5``/``sha1``/
``sha256`` for hashes of image bytes, ``url`` for hashes of the URL. ``url_digest`` names the digest
applied to the URL before comparing.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.keys import clean_hex_text, hex_to_keys, int64_to_keys
from scrub.urls import (
    canonical_host,
    canonical_url,
    canonicalize_urls,
    icann_public_suffix,
    map_distinct,
    plain_icann_public_suffixes,
)

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
    #: Whether the type carries a quality score (PDQ).
    has_quality: ClassVar[bool] = False

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


@register
class Pdq(HexDigestType):
    """PDQ perceptual hash of the image (256 bits), with an optional quality 0-100.

    Not inferred from a bare 64-hex value (that is a sha256): pass ``--type pdq`` or a type column.
    """

    name = "pdq"
    width = 32
    target = "pdq"
    has_quality = True
    expected = "a PDQ hash (64 hex digits)"


@register
class PHash(HexDigestType):
    """imagehash's 64-bit perceptual hash (``str(imagehash.phash(img))``)."""

    name = "phash"
    width = 8
    target = "phash"
    expected = "a 64-bit pHash (16 hex digits)"


@register
class DHash(HexDigestType):
    """imagehash's 64-bit difference hash (``str(imagehash.dhash(img))``)."""

    name = "dhash"
    width = 8
    target = "dhash"
    expected = "a 64-bit dHash (16 hex digits)"


class TextDigestType(KeyType):
    """A URL-derived text key, kept as the SHA-256 of its canonical form.

    Comparing digests is exact and keeps a stored list from holding URLs or hosts in clear.
    Subclasses define :meth:`canonical` (one value) and :meth:`canonical_column`.
    """

    width = 32
    target = "url"

    @classmethod
    @abstractmethod
    def canonical(cls, value: str) -> str | None:
        """The canonical text of ``value``, or None when it is not of this type."""

    @classmethod
    @abstractmethod
    def canonical_column(cls, values: pl.Series) -> pl.Series:
        """Vectorised :meth:`canonical`: canonical strings, null where invalid."""

    @classmethod
    def normalize(cls, value: str) -> str:
        canonical = cls.canonical(value)
        if canonical is None:
            raise ValueError(f"expected {cls.expected}")
        return canonical

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        return text_digest_keys(cls.canonical_column(values.cast(pl.String)))

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        return cls.canonical_column(values.cast(pl.String))

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        return hashlib.sha256(canonical.encode("utf-8")).digest()


def text_digest_keys(canonical: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """SHA-256 keys of canonical strings (the engine's form of url/host/domain keys)."""
    import polars_hash as plh

    digests = pl.DataFrame({"v": canonical}).select(plh.col("v").chash.sha2_256()).to_series()
    return hex_to_keys(digests.to_arrow(), 32)


@register
class Url(TextDigestType):
    """An exact URL, compared in canonical form (see ``scrub.urls``)."""

    name = "url"
    expected = "a URL (scheme://host/...)"

    @classmethod
    def canonical(cls, value: str) -> str | None:
        return canonical_url(value)

    @classmethod
    def canonical_column(cls, values: pl.Series) -> pl.Series:
        return canonicalize_urls(values)

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("HTTPS://Example.com:443/a/./b/%7Euser?#top", "https://example.com/a/b/~user"),
                ("http://bücher.de", "http://xn--bcher-kva.de/"),
                (" https://a.example/x%2fy ", "https://a.example/x%2Fy"),
                ("<URL:https://cdn.%73hop.example:+443/a\\b.jpg>",
                 "https://cdn.shop.example/a/b.jpg"),
                ("https://u:p@a@cdn.example\\a.jpg", "https://cdn.example/a.jpg"),
                ("http://3325668414/x", "http://198.57.172.62/x")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "example.com/x", "data:image/png;base64,AAAA", "https:///", "http://a\x00b/",
                "git+ssh://example.com/x", "http://example.com:65536/"]


@register
class Host(TextDigestType):
    """A host name: every URL on exactly this host (not its subdomains)."""

    name = "host"
    expected = "a host name (e.g. images.example.com)"

    @classmethod
    def canonical(cls, value: str) -> str | None:
        return canonical_hostname(value)

    @classmethod
    def canonical_column(cls, values: pl.Series) -> pl.Series:
        return map_distinct(values.cast(pl.String), canonical_hostname)

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("Images.Example.COM.", "images.example.com"), ("bücher.de", "xn--bcher-kva.de"),
                (" cdn.example.co.uk ", "cdn.example.co.uk"),
                ("cdn.%73hop.example", "cdn.shop.example"),
                ("example。com。", "example.com"), ("0xc6.0x39.0xac.0x3e", "198.57.172.62"),
                ("[0:0::1]", "[::1]")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "https://example.com/", "exa mple.com", "a/b", "user@example.com",
                "[::1]:80", "[zz]", "example.com\\x"]


@register
class Domain(TextDigestType):
    """A domain: every URL on it or on any host under it (``host == D`` or ``host`` ends with
    ``.D``), whatever D's place in the public suffix list: ``amazonaws.com``, ``blogspot.com``
    (private suffixes) and ``www.example.com`` name what they say. An ICANN public suffix
    itself (``com``, ``co.uk``) and a single label are refused, since they would remove every
    site of a country or registry, and so is an IP address (a ``host`` entry names one)."""

    name = "domain"
    expected = "a domain name (e.g. example.org) that is not a public suffix"

    @classmethod
    def normalize(cls, value: str) -> str:
        host = canonical_hostname(value)
        if host is None:
            raise ValueError(f"expected {cls.expected}")
        refused = _domain_refusal(host)
        if refused is not None:
            raise ValueError(refused)
        return host

    @classmethod
    def canonical(cls, value: str) -> str | None:
        try:
            return cls.normalize(value)
        except ValueError:
            return None

    @classmethod
    def canonical_column(cls, values: pl.Series) -> pl.Series:
        # Plain ASCII names without punycode (nearly every opt-out entry) are decided on the
        # whole column; the rest one by one (IDNA, suffixes the list spells in Unicode).
        text = values.cast(pl.String)
        hosts = text.str.to_lowercase().str.strip_chars_end(".")
        sure = (text.str.contains(r"^[A-Za-z0-9_.\-]+$")
                & hosts.str.contains(_HOST_OK.pattern)
                & hosts.str.contains(".", literal=True)
                & ~hosts.str.contains(r"(?:^|\.)xn--|\.(?:[0-9]+|0x[0-9a-f]*)$")).fill_null(False)
        sure = sure & ~plain_icann_public_suffixes(hosts)
        if bool(sure.all()):
            return hosts
        return hosts.zip_with(sure, map_distinct(text, cls.canonical, where=~sure))

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("Example.CO.UK", "example.co.uk"), ("alice.blogspot.com", "alice.blogspot.com"),
                ("bücher.de", "xn--bcher-kva.de"), ("amazonaws.com", "amazonaws.com"),
                ("blogspot.com", "blogspot.com"), ("CloudFront.net.", "cloudfront.net"),
                ("www.example.com", "www.example.com"), ("www.ck", "www.ck")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "https://example.com", "127.0.0.1", "com", "co.uk", "CO.UK.", "foo.ck",
                "xn--p1ai", "рф", "localhost", "a.b.0x1", "exa mple.com", "[::1]", "3325668414"]


def _domain_refusal(host: str) -> str | None:
    """Why a canonical host may not be a domain entry, or None. Never names the host."""
    if host.startswith("[") or _NUMBER_LABEL.fullmatch(host.rsplit(".", 1)[-1]):  # IPv6, IPv4
        return "an IP address is not a domain (a host entry names one address)"
    if icann_public_suffix(host):
        return ("a public suffix of the ICANN section of the public suffix list (a top-level "
                "or registry suffix): a domain entry there would remove every site under it "
                "(list the domains under it instead)")
    if "." not in host:
        return ("a single label is a top-level domain: a domain entry there would remove "
                "every site under it (list the domains under it instead)")
    return None


@register
class UrlPrefix(KeyType):
    """A URL prefix: every URL whose canonical form starts with the canonical prefix.

    Matching is on the canonical URL string: end a prefix with ``/`` to mean a folder
    (``https://a.example/img/`` does not match ``https://a.example/img2.jpg``; without the slash
    it does). Kept as text, since matching needs it.
    """

    name = "url_prefix"
    width = 0
    target = "url"
    textual = True
    expected = "a URL prefix (scheme://host/path...)"

    @classmethod
    def normalize(cls, value: str) -> str:
        canonical = canonical_url(value)
        if canonical is None:
            raise ValueError(f"expected {cls.expected}")
        return canonical

    @classmethod
    def normalize_column(cls, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        canonical = canonicalize_urls(values.cast(pl.String))
        valid = canonical.is_not_null().to_numpy()
        return canonical.to_numpy().astype(object), valid

    @classmethod
    def canonical_text_column(cls, values: pl.Series) -> pl.Series:
        return canonicalize_urls(values.cast(pl.String))

    @classmethod
    def engine_form(cls, canonical: str) -> bytes | str:
        return canonical

    @classmethod
    def examples(cls) -> list[tuple[str, str]]:
        return [("HTTPS://Example.com/Images/", "https://example.com/Images/"),
                ("http://example.com", "http://example.com/")]

    @classmethod
    def bad_examples(cls) -> list[str]:
        return ["", "/images/", "example.com/images"]


def canonical_hostname(value: str) -> str | None:
    """A bare host name in canonical form (the host of a URL, see
    :func:`scrub.urls.canonical_host`: ``0xc6.0x39.0xac.0x3e`` is ``198.57.172.62``), or None
    (URLs, paths and user@host are refused; an IPv6 address is written in brackets)."""
    text = value.strip()
    if text[:1] == "[" and text[-1:] == "]":  # an IPv6 address, as a URL writes it
        host = canonical_host(text)
        return host if host is not None and host.startswith("[") else None
    if not text or any(ch in text for ch in "/?#@: \t") or _HOST_BAD.search(text):
        return None
    host = canonical_host(text)
    if host is None or not _HOST_OK.match(host):
        return None
    return host


#: A last label that makes a host an IPv4 address to a WHATWG parser (decimal or hex).
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HOST_OK = re.compile(r"^[a-z0-9_~](?:[a-z0-9_~.\-]*[a-z0-9_~])?$")
_HOST_BAD = re.compile(r"[\x00-\x1f\x7f]")


@register
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


@register
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


@register
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
    """What :func:`fold_text` needs beyond lower-casing, worked out once from ``unicodedata``
    (~1 s): the characters lower-casing leaves but case folding changes (``ß`` -> ``ss``,
    ``ς`` -> ``σ``, ``ﬁ`` -> ``fi``...) with their folds, a regex class of them, a regex class
    of the default-ignorable characters, and a regex class of the characters that removing
    those or NFKC may change or combine (default ignorables, those not NFKC on their own,
    combining marks, the second characters of canonical pairs, Hangul vowel and final
    jamo): text without any of the latter is folded by lower-casing alone."""
    keys: list[str] = []
    folds: list[str] = []
    ignorable = {code for first, last in DEFAULT_IGNORABLE for code in range(first, last + 1)}
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
        if len(parts) == 2 and not parts[0].startswith("<"):  # a canonical pair's second
            unstable.add(int(parts[1], 16))
    return (keys, folds, _char_class({ord(k) for k in keys}), _char_class(ignorable),
            _char_class(unstable))


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


def _where(values: pl.Series, mask: pl.Series, change) -> pl.Series:  # type: ignore[no-untyped-def]
    """``change`` applied to the values where ``mask`` holds (it is costly), the others kept."""
    rows = mask.fill_null(False).arg_true()
    if len(rows) == 0:
        return values
    return values.scatter(rows, change(values.gather(rows)))


def fold_terms(values: pl.Series) -> pl.Series:
    """Caption terms (or captions) as they are matched: :func:`fold_text`, each run of
    whitespace one space, none at the ends."""
    return fold_text(values).str.replace_all(WHITESPACE_RUN, " ").str.strip_chars(" ")
