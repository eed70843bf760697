"""The canonical form over whole polars columns: equal to :func:`canonical_url` per value
(property-tested), with per-value work only on rare shapes, once per distinct value."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from scrub.keys import string_buffers
from scrub.urls._reference import (
    _ESCAPE_PATH,
    _UNRESERVED,
    DEFAULT_PORTS,
    _escape_char,
    canonical_host,
    canonical_url,
    remove_dot_segments,
    url_series,
)


def _before(expr: pl.Expr, by: str) -> pl.Expr:
    """The text before the first ``by`` (all of it when ``by`` is absent)."""
    return expr.str.splitn(by, 2).struct.field("field_0")


def _after(expr: pl.Expr, by: str) -> pl.Expr:
    """The text after the first ``by``; null where ``by`` is absent."""
    return expr.str.splitn(by, 2).struct.field("field_1")


#: A host the column path lower-cases itself: ASCII labels of letters, digits, ``-_~`` (then
#: the WHATWG parser only lower-cases it), trailing dots aside...
_PLAIN_HOST = r"^[A-Za-z0-9_~\-]+(?:\.[A-Za-z0-9_~\-]+)*\.*$"
#: ...unless a label is punycode (the parser checks it) or the last label is a number (the
#: host is an IPv4 address, which the parser rewrites).
_PARSED_HOST = r"(?i)(?:^|\.)(?:xn--|[0-9]+\.*$|0x[0-9a-f]*\.*$)"

#: Row states of :func:`_parse`.
_OK, _NOT_URL, _GENERAL = 0, 1, 2


def _parse(urls: pl.Series) -> pl.DataFrame:
    """Rules 1-5 over a whole column, for URLs of a plain shape.

    Columns: ``state`` (``_OK``; ``_NOT_URL``; ``_GENERAL``: a shape left to the reference,
    such as controls, backslashes, wrappers, ``https:host``, IPv6 or a port that is not ASCII
    digits), ``scheme`` (lower case), ``host`` (canonical), ``port`` ("" or ":NNNN",
    canonical), and raw ``path`` and ``query``. Per row, literal splits; the authorities are
    worked out once per distinct authority (:func:`_authorities`).
    """
    col = pl.col
    text = col("text")
    # Unicode whitespace at the ends; what else _EDGE strips is a C0 control, which makes a
    # row odd (left to the reference), as do DEL, backslashes and urllib's wrappers
    stripped = urls.cast(pl.String).str.strip_chars()
    parsed = (
        pl.LazyFrame({"text": stripped, "odd": _rows_holding(stripped, backslash=True)})
        .with_columns(
            odd=col("odd") | text.str.starts_with("<").fill_null(False)
            | text.str.starts_with("URL:").fill_null(False),
            scheme=_before(text, ":").str.to_lowercase(),
            rest=_after(text, ":"))
        .with_columns(special=(col("scheme").is_in(list(DEFAULT_PORTS))
                               & col("rest").is_not_null()).fill_null(False),
                      after=col("rest").str.slice(2))
        .with_columns(
            shape=~col("rest").str.starts_with("//").fill_null(False)
            | col("after").str.starts_with("/").fill_null(False),
            after=_before(col("after"), "#"))
        .with_columns(before_query=_before(col("after"), "?"), query=_after(col("after"), "?"))
        .select(
            "odd", "special", "shape", "scheme", "query",
            _before(col("before_query"), "/").alias("authority"),
            pl.when(_after(col("before_query"), "/").is_null()).then(pl.lit(""))
            .otherwise(pl.lit("/") + _after(col("before_query"), "/")).alias("path"))
        .collect())
    index, distinct = _distinct(parsed["authority"])
    table = _authorities(pl.Series(distinct, dtype=pl.String))
    table = pl.concat([table, pl.DataFrame(  # the last row: values without an authority
        {"host": [None], "digits": [None], "state": [_NOT_URL]}, schema=table.schema)])
    parsed = parsed.hstack(table[np.where(index < 0, len(table) - 1, index)]
                           .rename({"state": "authority_state"}))
    default = col("scheme").replace_strict(DEFAULT_PORTS, default=None, return_dtype=pl.String)
    return (parsed.lazy()
        .select(
            pl.when(col("odd")).then(pl.lit(_GENERAL))
            .when(~col("special")).then(pl.lit(_NOT_URL))
            .when(col("shape")).then(pl.lit(_GENERAL))
            .otherwise(col("authority_state")).cast(pl.UInt8).alias("state"),
            "scheme", "host",
            pl.when(col("digits").is_null() | (col("digits") == default)).then(pl.lit(""))
            .otherwise(pl.lit(":") + col("digits")).alias("port"),
            "path", "query").collect())


def _rows_holding(text: pl.Series, *, backslash: bool = False,
                  buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> np.ndarray:
    """Which values hold a C0 control or DEL (or, with ``backslash``, a backslash): one scan
    of the column's bytes (faster than a regex character class). ``buffers``:
    the column's :func:`~scrub.keys.string_buffers`, when at hand."""
    offsets, data, _ = buffers if buffers is not None else string_buffers(text.to_arrow())
    rows = np.zeros(len(text), dtype=bool)
    if len(offsets) < 2 or offsets[-1] == offsets[0]:
        return rows
    data = data[offsets[0]:offsets[-1]]
    found = (data < 32) | (data == 127)
    if backslash:
        found |= data == 92
    rows[np.searchsorted(offsets, np.flatnonzero(found) + offsets[0], side="right") - 1] = True
    return rows


def _authorities(authorities: pl.Series) -> pl.DataFrame:
    """Rules 3-5 on distinct authorities (what follows a special ``scheme://`` up to the first
    ``/``, ``?`` or ``#``): ``host`` (canonical), ``digits`` (the port without leading zeros,
    null when there is none) and ``state``. User information ends at the last ``@``; a host
    that is plain ASCII (:data:`_PLAIN_HOST`) is lower-cased here, any other goes through
    :func:`canonical_host` once. Brackets (IPv6), ports that are not ASCII digits and hosts
    with escapes that the parser refuses (urllib may take ``h%3A443``) are ``_GENERAL``."""
    col = pl.col
    table = (
        pl.LazyFrame({"authority": authorities})
        .select(col("authority").str.replace(r"^.*@", "").alias("hostport"))
        .with_columns(host=_before(col("hostport"), ":"), port=_after(col("hostport"), ":"))
        .with_columns(
            bracket=col("hostport").str.contains_any(["[", "]"]),
            plain=(col("host").str.contains(_PLAIN_HOST)
                   & ~col("host").str.contains(_PARSED_HOST)),
            present=col("port").is_not_null() & (col("port") != ""),
            digits=col("port").str.strip_chars_start("0"))
        .select(
            "host", "plain",
            pl.when(~col("present")).then(None).when(col("digits") == "").then(pl.lit("0"))
            .otherwise(col("digits")).alias("digits"),
            pl.when(col("bracket") | (col("present") & ~col("port").str.contains(r"^[0-9]+$")))
            .then(pl.lit(_GENERAL))
            .when(col("present") & ((col("digits").str.len_bytes() > 5)
                                    | (col("digits").cast(pl.Int64, strict=False) > 65535)))
            .then(pl.lit(_NOT_URL)).otherwise(pl.lit(_OK)).cast(pl.UInt8).alias("state"))
        .with_columns(host=pl.when(col("plain")).then(
            col("host").str.to_lowercase().str.strip_chars_end(".")).otherwise(col("host")))
        .collect())
    parse = (table["state"] == _OK) & ~table["plain"]
    if parse.any():  # other hosts (IDN, escapes, IPv4...)
        hosts = map_distinct(table["host"], canonical_host, where=parse)
        failed = parse & hosts.is_null()
        ask = failed & table["host"].str.contains("%", literal=True)
        table = table.with_columns(
            hosts, pl.when(ask).then(pl.lit(_GENERAL)).when(failed).then(pl.lit(_NOT_URL))
            .otherwise(table["state"]).cast(pl.UInt8).alias("state"))
    return table.select("host", "digits", "state")


def _percent_table() -> dict[str, str]:
    """Every spelling of every escape whose canonical form differs from it -> that form."""
    table: dict[str, str] = {}
    for value in range(256):
        canonical = chr(value) if value in _UNRESERVED else f"%{value:02X}"
        digits = f"{value:02x}"
        hi, lo = digits[0], digits[1]
        for a in {hi, hi.upper()}:
            for b in {lo, lo.upper()}:
                if f"%{a}{b}" != canonical:
                    table[f"%{a}{b}"] = canonical
    return table


_PERCENT_TABLE = _percent_table()
_UNRESERVED_ESCAPES = {k: v for k, v in _PERCENT_TABLE.items() if len(v) == 1}


def decode_unreserved_escapes(values: pl.Series) -> pl.Series:
    """Escapes of unreserved characters (``%7E``, ``%7e``...) decoded, as canonical URLs
    have them; every other character left as it is."""
    return values.str.replace_many(list(_UNRESERVED_ESCAPES), list(_UNRESERVED_ESCAPES.values()))


def canonicalize_urls(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """:func:`canonical_url` over a whole column; null where a value is not a URL.

    URLs that are canonical already are kept; the others go through :func:`_parse` with
    literal splits over whole columns, and rare shapes get per-value work on just those rows
    (once per distinct host, path or URL). Escapes are rewritten with a table of just the
    escapes and unsafe characters that occur (docs/design/urls.md says why).
    """
    name = (urls.name if isinstance(urls, pl.Series) else "") or "url"
    text = url_series(urls)
    simple = pl.select(pl.lit(text).str.contains(_ALREADY_CANONICAL)
                       & ~pl.lit(text).str.contains(_DOT_SEGMENT)).to_series().fill_null(False)
    if simple.all():
        return text.alias(name)
    if simple.any():
        rows = (~simple).arg_true()
        return text.scatter(rows, _canonicalize(text.gather(rows))).alias(name)
    return _canonicalize(text).alias(name)


#: An escape in canonical form: upper-case hex of a byte that is no unreserved character
#: (those, ``- . 0-9 A-Z _ a-z ~``, are decoded), so ``%20`` and ``%2F`` are kept as written.
_CANONICAL_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
#: URLs that are their own canonical form: a URL scheme and a host in lower case (no trailing
#: dot, no port, no user info), a path and an optional non-empty query of characters that
#: need no escaping and escapes in canonical form, no fragment; and (checked apart) no dot
#: segment. The host's labels hold no "--" (so no punycode, which the parser checks) and its
#: last label starts with a letter (so it is no IPv4 address, which the parser rewrites). Most
#: URLs of a real dataset are like this and skip the column pipeline.
_ALREADY_CANONICAL = (r"^(?:https?|wss?|ftp)://(?:[a-z0-9_~]+(?:-[a-z0-9_~]+)*\.)*"
                      r"[a-z][a-z0-9_~]*(?:-[a-z0-9_~]+)*"
                      r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|" + _CANONICAL_ESCAPE + r")*"
                      r"(?:\?(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|" + _CANONICAL_ESCAPE + r")+)?$")
_DOT_SEGMENT = r"/\.\.?(?:[/?]|$)"


def _canonicalize(urls: pl.Series) -> pl.Series:
    parts = _parse(urls)
    col = pl.col
    both = pl.concat([col("path"), col("query")]).drop_nulls()
    found = parts.lazy().select(
        both.filter(both.str.contains("%", literal=True))
        .str.extract_all(r"%[0-9A-Fa-f]{2}").explode().drop_nulls().unique().implode()
        .alias("escapes"),
        both.str.extract_all(_ESCAPE_PATH.pattern).explode().drop_nulls().unique().implode()
        .alias("unsafe"),
        col("query").str.contains("'", literal=True).any().alias("quote"),
    ).collect()
    escapes = [e for e in found["escapes"][0].to_list() if e in _PERCENT_TABLE]
    unsafe = found["unsafe"][0].to_list()

    def normalized(part: pl.Expr, extra: list[str]) -> pl.Expr:
        if escapes:
            part = part.str.replace_many(escapes, [_PERCENT_TABLE[e] for e in escapes])
        if unsafe or extra:
            chars = unsafe + extra
            part = part.str.replace_many(chars, [_escape_char(ch) for ch in chars])
        return part

    parts = parts.lazy().with_columns(
        path=normalized(col("path"), []),
        query=normalized(col("query"), ["'"] if found["quote"][0] else [])).collect()
    dots = parts["path"].str.contains(r"(^|/)\.\.?(/|$)").fill_null(False)
    if dots.any():
        parts = parts.with_columns(map_distinct(parts["path"], remove_dot_segments, where=dots))
    out = parts.select(
        pl.when(col("state") != _OK).then(None).otherwise(pl.concat_str([
            col("scheme"), pl.lit("://"), col("host"), col("port"),
            pl.when(col("path") == "").then(pl.lit("/")).otherwise(col("path")),
            pl.when(col("query").fill_null("") == "").then(pl.lit(""))
            .otherwise(pl.lit("?") + col("query")),
        ])).alias(urls.name or "url")).to_series()
    general = parts["state"] == _GENERAL
    if general.any():  # the shapes left to the reference, once per distinct value
        out = out.scatter(general.arg_true(),
                          map_distinct(urls, canonical_url, where=general).filter(general))
    return out


def _distinct(values: pl.Series) -> tuple[np.ndarray, list[str]]:
    """(index of each value in the distinct values, -1 for null; the distinct values, which
    hold no null)."""
    encoded = pc.dictionary_encode(values.to_arrow())
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return index, encoded.dictionary.to_pylist()



def map_distinct(values: pl.Series, function: Callable[[str], str | None], *,
                 where: pl.Series | None = None) -> pl.Series:
    """``function`` applied once per distinct value (to the rows ``where`` is true, if given).

    For per-value work that vectorises badly (IDNA, the public suffix list, dot segments) on
    columns whose values repeat a lot or rarely need it.
    """
    rows = where.fill_null(False).arg_true() if where is not None else None
    subset = values.gather(rows) if rows is not None else values
    if len(subset) == 0:
        return values
    mapping = {v: function(v) for v in subset.unique().drop_nulls().to_list()}
    mapped = subset.replace_strict(mapping, default=None, return_dtype=pl.String)
    return values.scatter(rows, mapped) if rows is not None else mapped

