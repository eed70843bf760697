"""Canonical hosts of URL columns, as codes into the distinct hosts (host rules look each
distinct host up once)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import Enum
from typing import Final, Literal

import numpy as np
import polars as pl

from scrub.keys import string_buffers
from scrub.urls._columns import _GENERAL, _OK, _distinct, _parse, _rows_holding, map_distinct
from scrub.urls._reference import DEFAULT_PORTS, canonical_host, url_host, url_series


def canonical_hosts(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """The canonical host of each URL; null where a value is not a URL.

    Equal to ``hosts_of(canonicalize_urls(urls))`` without building canonical paths (see
    :func:`host_table`, which this spells out row by row).
    """
    codes, distinct = host_table(urls)
    name = (urls.name if isinstance(urls, pl.Series) else "") or "host"
    return hosts_at(codes, distinct).alias(name)


def hosts_at(codes: np.ndarray, distinct: pl.Series) -> pl.Series:
    """The hosts of a :func:`host_table`, one per row (null where the code is -1)."""
    index = pl.Series(codes, dtype=pl.Int64)
    return distinct.gather(pl.select(pl.when(index >= 0).then(index)).to_series())


def host_table(urls: pl.Series | Sequence[str | None]) -> tuple[np.ndarray, pl.Series]:
    """Canonical hosts as ``(codes, distinct)``: ``distinct`` holds each host once and
    ``codes`` (int64, one per row) indexes into it, -1 where a value is not a URL.

    Hosts repeat a lot, so host rules look up each distinct host once and mark rows by code
    (a gather) instead of comparing strings row by row. Per row there is one literal split
    (``scheme:``, ``""``, authority) and a byte scan for controls; everything
    else is worked out once per distinct scheme and per distinct authority (results are
    cached across calls). Other shapes (whitespace or non-ASCII at an end, controls,
    ``https:host``, authorities with a backslash, IPv6 or a port that is not ASCII digits...)
    take :func:`_parse` and, for what it leaves, the reference.
    """
    text = url_series(urls)
    offsets, data, nulls = buffers = string_buffers(text.to_arrow())
    starts, ends = offsets[:-1], offsets[1:]
    odd = _rows_holding(text, buffers=buffers)
    if len(data):  # whitespace or non-ASCII at an end: maybe stripped
        first = data[np.minimum(starts, len(data) - 1)]
        last = data[np.maximum(ends - 1, 0)]
        odd |= (ends > starts) & ((first <= 32) | (first >= 128) | (last <= 32)
                                  | (last >= 128))
    col = pl.col
    parts = (pl.LazyFrame({"u": text})
             .select(col("u").str.split_exact("/", 2).alias("p"))
             .select(col("p").struct.field("field_0").alias("scheme"),
                     col("p").struct.field("field_1").alias("empty"),
                     col("p").struct.field("field_2").alias("authority"))
             .collect())
    schemes = [v for v in parts["scheme"].unique().drop_nulls().to_list()
               if v.endswith(":") and v[:-1].lower() in DEFAULT_PORTS]
    fast = (parts.lazy().select(col("scheme").is_in(schemes) & (col("empty") == ""))
            .collect().to_series().fill_null(False).to_numpy()) & ~odd
    found: dict[str, int] = {}
    index, authorities = _distinct(parts["authority"])
    index = np.where(fast, index, -1)
    hosts = [_host_of_authority(a) for a in authorities]
    asks = np.array([h is _ASK for h in hosts] + [False])
    codes = _codes_of([None if h is _ASK else h for h in hosts], found)[index]
    rows = np.flatnonzero((~fast & ~nulls) | asks[index])
    if len(rows):
        index, distinct = _distinct(_parsed_hosts(text.gather(rows)))
        codes[rows] = _codes_of(distinct, found)[index]
    return codes, pl.Series(list(found), dtype=pl.String)


def _parsed_hosts(urls: pl.Series) -> pl.Series:
    """``hosts_of(canonicalize_urls(urls))`` without the paths: :func:`_parse`'s hosts, and
    :func:`url_host` once per distinct value of the shapes it leaves to the reference."""
    parts = _parse(urls)
    hosts = pl.select(pl.when(pl.lit(parts["state"]) == _OK).then(pl.lit(parts["host"]))
                      ).to_series()
    general = parts["state"] == _GENERAL
    if general.any():
        hosts = hosts.scatter(general.arg_true(),
                              map_distinct(urls, url_host, where=general).filter(general))
    return hosts


def encode_hosts(hosts: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """A column of hosts (nulls allowed) as :func:`host_table` gives them."""
    index, distinct = _distinct(hosts)
    return index, pl.Series(distinct, dtype=pl.String)



def _codes_of(hosts: Sequence[str | None], found: dict[str, int]) -> np.ndarray:
    """Codes of some hosts in ``found`` (new ones added), -1 for None, plus a trailing -1 (so
    that an index of -1 gives -1)."""
    return np.array([-1 if h is None else found.setdefault(h, len(found)) for h in hosts]
                    + [-1], dtype=np.int64)


class _Ask(Enum):
    """What :func:`_host_of_authority` says of an authority it leaves to
    :func:`canonicalize_urls`."""

    ASK = "ask"


_ASK: Final = _Ask.ASK


@functools.lru_cache(maxsize=1 << 18)
def _host_of_authority(rest: str) -> str | None | Literal[_Ask.ASK]:
    """The canonical host in what follows a special ``scheme://`` up to the next ``/`` (as
    :func:`canonical_url` reads it), None when that is not a URL, or ``_ASK`` for the shapes
    :func:`_parse` leaves to the reference (no authority, a backslash, brackets, a port that
    is not ASCII digits, a host with escapes that the parser refuses)."""
    authority = rest.split("#", 1)[0].split("?", 1)[0]
    if not authority or any(ch in authority for ch in "\\[]"):
        return _ASK
    host, colon, port = authority.rpartition("@")[2].partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return _ASK
    if port and int(port) > 65535:
        return None
    found = canonical_host(host)
    return _ASK if found is None and "%" in host else found


def hosts_of(canonical: pl.Series) -> pl.Series:
    """The host of each canonical URL (null stays null)."""
    return canonical.str.extract(r"^[a-z][a-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1)
