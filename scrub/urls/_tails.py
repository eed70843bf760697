"""The last segment of each URL's canonical path, mostly without canonicalising the URL
(what incremental release probes record)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from scrub.urls._columns import _PERCENT_TABLE, canonicalize_urls
from scrub.urls._reference import url_series

#: Characters a path segment keeps as they are in canonical form (rule 6: unreserved
#: characters, sub-delimiters, ":" and "@"); a segment of only these is already canonical.
_PLAIN_SEGMENT = r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$"
#: Deleting this leaves a URL's last path segment and what follows it (its query and
#: fragment), or, when the URL has no path (its authority runs to a "?", a "#" or the end),
#: nothing at all.
_BEFORE_TAIL = r"(?s)^(?:[^?#/]*//[^?#/]*(?:[?#].*)?$|[^?#]*/)"
#: URLs whose raw shape :data:`_BEFORE_TAIL` reads as WHATWG does: ``scheme://`` and a
#: non-empty authority (checked apart: no backslash, tab or newline anywhere; the parser
#: reads ``https:host``, ``https:///host``, ``host\\x.jpg``... otherwise; other controls
#: there make the URL no URL).
_TAIL_SHAPE = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/\\?#]"


def _last_segments(urls: pl.Series) -> pl.Series:
    """What follows the last "/" before each URL's query or fragment, up to its "?" (a "#"
    before it is left in). One regex without capture groups (which would take the slower
    engine) and one literal split."""
    return (pl.DataFrame({"url": urls}).select(
        pl.col("url").str.replace(_BEFORE_TAIL, "").str.split_exact("?", 1)
        .struct.field("field_0")).to_series())


def url_tails(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """For each URL, the last segment of its canonical path ("" when the path ends with "/");
    for a value that is not a URL, some string of no consequence (or null).

    Equal to the last segment of :func:`canonicalize_urls` for every URL (tested), without
    canonicalising the URLs of a plain shape (:data:`_TAIL_SHAPE`) whose raw last segment is
    plain: rule 6 leaves such a segment as it is, rule 7 only changes the last segment when
    it is "." or ".." (it becomes ""), and no other rule touches it. The others (escapes,
    spaces, non-ASCII, other shapes...) are canonicalised first. Incremental release rebuilds
    use it to rule out shards that cannot hold a listed URL (see :mod:`scrub.release.probe`).
    """
    name = (urls.name if isinstance(urls, pl.Series) else "") or "tail"
    text = url_series(urls)
    tails = _last_segments(text)
    fragments = tails.str.contains("#", literal=True).fill_null(False).arg_true()
    if len(fragments):  # a "#" before any "?": cut there too (the fragment holds the rest)
        tails = tails.scatter(fragments, tails.gather(fragments).str.split_exact("#", 1)
                              .struct.field("field_0"))
    frame = pl.DataFrame({"tail": tails, "text": text}).with_columns(
        pl.when(pl.col("tail").is_in([".", ".."])).then(pl.lit("")).otherwise(pl.col("tail"))
        .alias("tail"),
        plain=pl.col("tail").str.contains(_PLAIN_SEGMENT).fill_null(True),
        shaped=(pl.col("text").str.contains(_TAIL_SHAPE)
                & ~pl.col("text").str.contains(r"[\\\t\n\r]")).fill_null(True))
    tails = frame["tail"]
    rows = (~frame["plain"] | ~frame["shaped"]).arg_true()
    if len(rows):
        slow = tails.gather(rows)
        escaped = (slow.str.contains(_ESCAPED_SEGMENT)
                   & frame["shaped"].gather(rows)).fill_null(False)
        fixed = slow
        some = escaped.arg_true()
        if len(some):  # plain but for escapes (file names with %20...): rule 6 on the segment
            normal = _normalize_escapes(slow.gather(some))
            fixed = fixed.scatter(some, pl.select(
                pl.when(pl.lit(normal).is_in([".", ".."])).then(pl.lit(""))
                .otherwise(pl.lit(normal))).to_series())
        other = (~escaped).arg_true()
        if len(other):  # spaces, non-ASCII, other shapes...: the whole URL is canonicalised
            fixed = fixed.scatter(other, _last_segments(
                canonicalize_urls(text.gather(rows.gather(other)))))
        tails = tails.scatter(rows, fixed)
    return tails.alias(name)


#: A segment that is plain but for "%" (escapes, or a "%" that escapes nothing).
_ESCAPED_SEGMENT = r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$"


def _normalize_escapes(values: pl.Series) -> pl.Series:
    """:func:`normalize_percent` of values that hold no character it escapes: the escapes of
    unreserved characters decoded, the others in upper case (a table of just the escapes
    found, as :func:`canonicalize_urls` does)."""
    found = (values.str.extract_all(r"%[0-9A-Fa-f]{2}").explode().drop_nulls().unique()
             .to_list())
    escapes = [e for e in found if e in _PERCENT_TABLE]
    if not escapes:
        return values
    return values.str.replace_many(escapes, [_PERCENT_TABLE[e] for e in escapes])
