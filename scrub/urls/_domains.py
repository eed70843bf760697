"""Registrable domains and public suffixes (the public suffix list bundled with tldextract,
never fetched), and the dot-suffixes of hosts that domain rules match."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl

from scrub.urls._columns import map_distinct
from scrub.urls._reference import _psl, registrable_domain


@functools.lru_cache(maxsize=1)
def _psl_rules() -> tuple[pl.Series, pl.Series, pl.Series]:
    """The public suffix list's rules (private section included) as exact suffixes, wildcard
    bases (``*.base``) and exceptions (``!name``)."""
    rules = list(_psl()._get_tld_extractor().tlds_incl_private)
    exact = [r for r in rules if not r.startswith(("*.", "!"))]
    wild = [r[2:] for r in rules if r.startswith("*.")]
    exceptions = [r[1:] for r in rules if r.startswith("!")]
    return (pl.Series(exact, dtype=pl.String), pl.Series(wild, dtype=pl.String),
            pl.Series(exceptions, dtype=pl.String))


def plainly_registrable(hosts: pl.Series) -> pl.Series:
    """True where a canonical ASCII host is surely its own registrable domain by the rules
    alone: one label on an exact public suffix that no wildcard or exception touches, and not
    a suffix itself. False means "not sure" (ask :func:`registrable_domain`), not "no"."""
    exact, wild, exceptions = _psl_rules()
    exact, wild, exceptions = exact.implode(), wild.implode(), exceptions.implode()
    rest = hosts.str.extract(r"^[^.]+\.(.+)$", 1)
    sure = (rest.is_in(exact) & ~rest.is_in(wild) & ~rest.is_in(exceptions)
            & ~hosts.is_in(exact) & ~hosts.is_in(exceptions)
            & ~hosts.str.contains(r"(?:^|\.)xn--") & hosts.str.contains(r"^[a-z0-9_.\-]+$"))
    return sure.fill_null(False)


def registrable_domains(hosts: pl.Series) -> pl.Series:
    """:func:`registrable_domain` over a column of canonical hosts, once per distinct host."""
    return map_distinct(hosts, registrable_domain)


@functools.lru_cache(maxsize=65536)
def icann_public_suffix(host: str) -> bool:
    """Whether a canonical host is itself a public suffix of the public suffix list's ICANN
    section (``com``, ``co.uk``, ``foo.ck`` under ``*.ck``; not ``blogspot.com``, which is in
    the private section). Punycode labels are looked up as the list spells them."""
    result = _psl()(host, include_psl_private_domains=False)
    return bool(result.suffix) and not result.domain and not result.subdomain


@functools.lru_cache(maxsize=1)
def _icann_rules() -> tuple[pl.Series, pl.Series, pl.Series]:
    """The ICANN section's rules as exact suffixes, wildcard bases and exceptions."""
    rules = list(_psl()._get_tld_extractor().tlds_excl_private)
    exact = [r for r in rules if not r.startswith(("*.", "!"))]
    wild = [r[2:] for r in rules if r.startswith("*.")]
    exceptions = [r[1:] for r in rules if r.startswith("!")]
    return (pl.Series(exact, dtype=pl.String), pl.Series(wild, dtype=pl.String),
            pl.Series(exceptions, dtype=pl.String))


def plain_icann_public_suffixes(hosts: pl.Series) -> pl.Series:
    """:func:`icann_public_suffix` over a column of canonical hosts made of ASCII labels none
    of which is punycode (the list spells IDN suffixes in Unicode): true where a host is an
    exact ICANN suffix, or one label on an ICANN wildcard base that no exception names."""
    exact, wild, exceptions = (rules.implode() for rules in _icann_rules())
    rest = hosts.str.extract(r"^[^.]+\.(.+)$", 1)
    return (hosts.is_in(exact) | (rest.is_in(wild) & ~hosts.is_in(exceptions))).fill_null(False)


def host_suffixes(hosts: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Every dot-suffix of each host, the host itself included, as ``(owner, suffixes)``:
    ``owner[i]`` (int64) is the position in ``hosts`` of the host ``suffixes[i]`` ends it.
    ``a.b.example.com`` gives ``a.b.example.com``, ``b.example.com``, ``example.com``,
    ``com``; a null host gives nothing.

    Domain rules match a host when one of its suffixes is listed (``host == D`` or
    ``host.endswith("." + D)``), whatever the public suffix list says about D; release probe
    sets record the same suffixes. One vectorised explode over the (distinct) hosts.
    """
    col = pl.col
    table = (pl.LazyFrame({"host": hosts.cast(pl.String)})
             .with_row_index("owner")
             .filter(col("host").is_not_null())
             .with_columns(labels=col("host").str.split("."))
             .with_columns(start=pl.int_ranges(0, col("labels").list.len()))
             .explode("start")
             .select(col("owner").cast(pl.Int64),
                     col("labels").list.slice(col("start")).list.join(".").alias("suffix"))
             .collect())
    return table["owner"].to_numpy(), table["suffix"]
