"""URL-derived keys (URLs, hosts, domains as SHA-256 of their canonical text) and URL
prefixes (kept as canonical text)."""

from __future__ import annotations

import hashlib
import re
from abc import abstractmethod

import numpy as np
import polars as pl

from scrub.keys import hex_to_keys
from scrub.lists._keytype import KeyType
from scrub.urls import (
    canonical_host,
    canonical_url,
    canonicalize_urls,
    icann_public_suffix,
    map_distinct,
    plain_icann_public_suffixes,
)


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
