"""A record batch as rules see it: its column roles and a cache of derived key columns (decoded
hashes, URL digests, canonical URLs, hosts), computed once per batch whichever rules need them."""

from __future__ import annotations

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa

from scrub.dataset import DIGEST_WIDTHS, ColumnRoles, role_values
from scrub.keys import KeySet, digest_hex, digest_keys, hex_to_keys, keys_to_hex
from scrub.lists.types import (
    HexDigestType,
    KeyType,
    TextDigestType,
    UrlDigestType,
    text_digest_keys,
)
from scrub.urls import (
    canonicalize_urls,
    encode_hosts,
    host_suffixes,
    host_table,
    hosts_at,
    hosts_of,
)

__all__ = ["BatchView"]


class BatchView:
    """One record batch with its column roles and a cache of derived key columns.

    Derived columns (decoded hashes, URL digests) are computed once per batch, whichever rules
    need them, and the rows that cannot match a rule because their value is missing or malformed
    are counted per column as ``unmatchable``.
    """

    def __init__(self, batch: pa.RecordBatch | pa.Table, roles: ColumnRoles) -> None:
        self.batch = batch
        self.roles = roles
        self.num_rows = batch.num_rows
        self.unmatchable: dict[str, int] = {}
        self._keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._columns: dict[str, pa.Array] = {}
        self._text: dict[str, pl.Series] = {}
        self._hosts: tuple[np.ndarray, pl.Series] | None = None
        self._suffixes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: Evidence of perceptual rules: id(rule) -> (rows, smallest distance per row).
        self.distances: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def column(self, role: str) -> pa.Array:
        """The values of ``role``'s column as plain Arrow (see :func:`scrub.dataset.role_values`:
        dictionaries decoded, views as large types); an error naming the column when its type
        cannot hold the role's values."""
        cached = self._columns.get(role)
        if cached is None:
            name = self.roles.get(role)
            if name is None:
                raise KeyError(role)
            cached = self._columns[role] = role_values(self.batch.column(name), role, name)
        return cached

    def digest_text(self, role: str) -> pl.Series:
        """A digest role's column as lowercase hex text: text stripped and lower-cased, digests
        stored as bytes or integers written out in hex (null where null or malformed)."""
        return pl.Series(digest_hex(self.column(role), DIGEST_WIDTHS[role])).cast(pl.String)

    def canonical_urls(self) -> pl.Series:
        """The URL column in canonical form (null where a value is not a URL), counted once."""
        cached = self._text.get("canonical")
        if cached is None:
            cached = canonicalize_urls(pl.Series(self.column("url")).cast(pl.String))
            self._count_not_urls(cached)
            self._text["canonical"] = cached
        return cached

    def host_table(self) -> tuple[np.ndarray, pl.Series]:
        """Canonical hosts as (a code per row, the distinct hosts), see
        :func:`~scrub.urls.host_table`; worked out once per batch, without canonicalising paths
        (unless canonical URLs are at hand already)."""
        cached = self._hosts
        if cached is None:
            if "canonical" in self._text:
                cached = encode_hosts(hosts_of(self._text["canonical"]))
            else:
                cached = host_table(pl.Series(self.column("url")).cast(pl.String))
                name = self.roles.get("url") or "url"
                self.unmatchable[f"{name} (not a URL)"] = int(np.count_nonzero(cached[0] < 0))
            self._hosts = cached
        return cached

    def hosts(self) -> pl.Series:
        """Canonical hosts (null where a value is not a URL), one per row."""
        return hosts_at(*self.host_table())

    def rows_on_hosts(self, hosts: pl.Series) -> np.ndarray:
        """The rows whose canonical host is one of ``hosts`` (looked up once per distinct host,
        then marked by code)."""
        codes, distinct = self.host_table()
        listed = np.append(distinct.is_in(hosts.implode()).to_numpy(), False)
        return np.flatnonzero(listed[codes])

    def host_suffix_keys(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(owner, keys, valid)``: the SHA-256 key of every dot-suffix of every distinct host
        (the host itself included, see :func:`~scrub.urls.host_suffixes`), ``owner`` giving
        the distinct host of each; worked out once per batch, for every domain rule."""
        if self._suffixes is None:
            owner, suffixes = host_suffixes(self.host_table()[1])
            keys, valid = text_digest_keys(suffixes)
            self._suffixes = (owner, keys, valid)
        return self._suffixes

    def rows_in_domains(self, domains: KeySet) -> np.ndarray:
        """Mask of the rows whose canonical host is a listed domain D or ends with ``.D``
        (``domains`` holds the SHA-256 keys of canonical domains): one lookup per suffix of
        each distinct host, then a gather by host code."""
        codes, distinct = self.host_table()
        owner, keys, valid = self.host_suffix_keys()
        listed = np.zeros(len(distinct) + 1, dtype=bool)  # the last: rows that are no URL
        listed[owner[domains.contains(keys, valid)]] = True
        return listed[codes]

    def domain_pairs(self, rows: np.ndarray) -> pl.DataFrame:
        """``(row, value)`` for each of ``rows`` (``row`` its position there) and the hex
        SHA-256 key of each suffix of its host: which domain entries each row falls under."""
        codes = self.host_table()[0][rows]
        owner, keys, valid = self.host_suffix_keys()
        suffixes = pl.DataFrame({"code": owner[valid],
                                 "value": keys_to_hex(keys[valid]).astype(str)})
        return (pl.DataFrame({"row": np.arange(len(rows), dtype=np.int64), "code": codes})
                .join(suffixes, on="code").select("row", "value"))

    def has_hosts(self) -> bool:
        """Whether the hosts (or canonical URLs) of every row are worked out already."""
        return self._hosts is not None or "canonical" in self._text

    def distinct_hosts(self) -> pl.Series:
        return self.host_table()[1]

    def canonical_urls_of(self, rows: np.ndarray) -> pl.Series:
        """Canonical URLs of some rows only (all of them when they are cached already)."""
        if "canonical" in self._text:
            return self._text["canonical"].gather(rows)
        urls = pl.Series(self.column("url")).cast(pl.String)
        return canonicalize_urls(urls.gather(rows))

    def _count_not_urls(self, values: pl.Series) -> None:
        name = self.roles.get("url") or "url"
        self.unmatchable[f"{name} (not a URL)"] = int(values.null_count())

    def keys_for(self, key_type: type[KeyType],
                 canonical: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, valid)`` of the column this type matches, decoded to fixed-width binary.

        For URL digests, ``canonical`` digests the canonical URL instead of the stored one.
        """
        cache_key = f"{key_type.name}:{canonical}"
        cached = self._keys.get(cache_key)
        if cached is not None:
            return cached
        if issubclass(key_type, UrlDigestType):
            urls = self.canonical_urls().to_arrow() if canonical else self.column("url")
            digests = _url_digest(urls, key_type.url_digest)
            keys, valid = hex_to_keys(digests, key_type.width)
        elif key_type.name == "url":
            keys, valid = text_digest_keys(self.canonical_urls())
        elif key_type.name == "domain":  # one key per row cannot say "or under it"
            raise TypeError("domain entries match every suffix of a host: see rows_in_domains")
        elif issubclass(key_type, TextDigestType):  # host: digested once per host
            codes, distinct = self.host_table()
            keys, valid = text_digest_keys(distinct)
            keys = np.concatenate([keys, np.zeros_like(keys[:1], shape=(1,) + keys.shape[1:])])
            keys, valid = keys[codes], np.append(valid, False)[codes]
        else:
            column = self.column(key_type.target)
            keys, valid = (digest_keys(column, key_type.width)
                           if issubclass(key_type, HexDigestType)
                           else key_type.column_keys(column))
            name = self.roles.get(key_type.target) or key_type.target
            self.unmatchable[name] = int((~valid).sum())
        self._keys[cache_key] = (keys, valid)
        return keys, valid


def _url_digest(urls: pa.Array | pa.ChunkedArray, digest: str) -> pa.Array:
    """Hex digest of each URL's UTF-8 bytes (null stays null)."""
    frame = pl.DataFrame({"u": pl.Series(urls).cast(pl.String)})
    expr = plh.col("u")
    hashed = {
        "md5": expr.nchash.md5(),
        "sha1": expr.nchash.sha1(),
        "sha256": expr.chash.sha2_256(),
    }[digest]
    return frame.select(hashed).to_series().to_arrow()
