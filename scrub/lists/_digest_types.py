"""Digests of image bytes and of URLs, and perceptual hashes: fixed-width hex."""

from __future__ import annotations

from typing import ClassVar

from scrub.lists._keytype import HexDigestType


class Md5(HexDigestType):
    """MD5 of the image bytes."""

    name = "md5"
    width = 16
    target = "md5"
    inferable = True
    expected = "an md5 digest (32 hex digits)"


class Sha1(HexDigestType):
    """SHA-1 of the image bytes."""

    name = "sha1"
    width = 20
    target = "sha1"
    inferable = True
    expected = "a sha1 digest (40 hex digits)"


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


class UrlMd5(UrlDigestType):
    """MD5 of the URL."""

    name = "url_md5"
    width = 16
    url_digest = "md5"
    expected = "an md5 digest of a URL (32 hex digits)"


class UrlSha1(UrlDigestType):
    """SHA-1 of the URL."""

    name = "url_sha1"
    width = 20
    url_digest = "sha1"
    expected = "a sha1 digest of a URL (40 hex digits)"


class UrlSha256(UrlDigestType):
    """SHA-256 of the URL."""

    name = "url_sha256"
    width = 32
    url_digest = "sha256"
    expected = "a sha256 digest of a URL (64 hex digits)"


class Pdq(HexDigestType):
    """PDQ perceptual hash of the image (256 bits), with an optional quality 0-100.

    Not inferred from a bare 64-hex value (that is a sha256): pass ``--type pdq`` or a type column.
    """

    name = "pdq"
    width = 32
    target = "pdq"
    expected = "a PDQ hash (64 hex digits)"


class PHash(HexDigestType):
    """imagehash's 64-bit perceptual hash (``str(imagehash.phash(img))``)."""

    name = "phash"
    width = 8
    target = "phash"
    expected = "a 64-bit pHash (16 hex digits)"


class DHash(HexDigestType):
    """imagehash's 64-bit difference hash (``str(imagehash.dhash(img))``)."""

    name = "dhash"
    width = 8
    target = "dhash"
    expected = "a 64-bit dHash (16 hex digits)"

