"""One rule for many sources: ledger requests at scale.

A ledger can hold 100k verified requests. A rule per request would mean 100k passes over every
batch, so the plan holds one rule per item type over the values of all requests, and
:class:`AttributedRule` then names, for the rows that rule hits (few), the requests whose own
values they match (a join on those rows only), each with its own reason.

Attribution compares the forms the engine matched: fixed-width keys (hashes, URL/host/domain
digests, sample keys), canonical prefixes inside the row's host, caption terms at word
boundaries, perceptual index entries within the radius.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from scrub.engine.reasons import Reason
from scrub.engine.rules import (
    BatchView,
    CaptionTermRule,
    ExactKeyRule,
    PerceptualRule,
    PrefixRule,
    ProbeBounds,
    Rule,
    Source,
)
from scrub.keys import keys_to_hex
from scrub.lists.types import UrlDigestType, fold_terms, get_type, text_digest_keys
from scrub.urls import (
    canonical_hosts,
    canonicalize_urls,
    decode_unreserved_escapes,
    hosts_of,
    url_tails,
)

#: A URL whose scheme is followed by "//" and an authority of ASCII characters other than "%",
#: tabs and newlines up to the first "/" (or the end): its canonical host, if it has one, is
#: in that authority verbatim (up to case). Other URLs (escapes, IDN, "https:host", tabs or
#: newlines inside the host, which the parser removes...) are kept as candidates.
_PLAIN_AUTHORITY = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/%\t\n\r\x{80}-\x{10FFFF}]*(?:/|$)"


class AttributedRule(Rule):
    """``inner`` matches the values of many sources at once; :meth:`attribute` splits its hits
    by source. ``values`` are canonical item values, ``owners`` the source id of each (a value
    named by several sources appears once per source); each source's rows get its reason.
    :meth:`item_pairs` names the item (position in ``values``) behind each hit row, and
    ``item_keys``, when the caller sets it (one label per value, e.g. the ledger's keyed item
    digest), says what to count those rows under."""

    def __init__(self, inner: Rule, type_name: str, values: Sequence[str],
                 owners: Sequence[int], source: Source, reasons: Mapping[int, Reason]) -> None:
        super().__init__(inner.reason, source)
        #: The reason of each source's rows (a request's kind).
        self.reasons = dict(reasons)
        self.inner = inner
        self.type_name = type_name
        self.key_type = get_type(type_name)
        if type_name in ("url", "url_prefix"):
            # Stored items are canonical, but maybe under an older canonical form
            # (scrub.urls.URL_FORM): read them as today's (null where no longer a URL).
            values = canonicalize_urls(pl.Series(values, dtype=pl.String)).to_list()
        table = pl.DataFrame({"value": pl.Series(values, dtype=pl.String),
                              "source": pl.Series(owners, dtype=pl.Int32),
                              "item": pl.Series(np.arange(len(values), dtype=np.int32))})
        if isinstance(inner, (ExactKeyRule, PerceptualRule)):
            keys, valid = self.key_type.normalize_column(table["value"])
            table = table.filter(pl.Series(valid)).with_columns(
                pl.Series("value", keys_to_hex(keys[valid]).astype(str)))
        elif isinstance(inner, CaptionTermRule):  # folded as the rule folds its terms
            table = table.with_columns(fold_terms(table["value"]).alias("value"))
        elif isinstance(inner, PrefixRule):
            table = table.drop_nulls("value")
            table = table.with_columns(host=hosts_of(table["value"]))
        self.owners = table.unique()
        #: A label per value (see the class text); None: per-item counts are not wanted.
        self.item_keys: list[str] | None = None
        #: Hosts of the listed URLs: only rows on them can match (see :meth:`match`).
        self.url_hosts = (hosts_of(pl.Series(values, dtype=pl.String)).drop_nulls().unique()
                          if type_name == "url" else None)
        #: The last segments of the listed URLs' canonical paths: only rows whose URL has one
        #: of them can match (release probe sets use them, see scrub.release.probe).
        self.url_segments = (url_tails(pl.Series(values, dtype=pl.String)).drop_nulls().unique()
                             if type_name == "url" else None)
        #: The listed URLs' last path segments, when each is plain text (unreserved
        #: characters): a URL without %-escapes or non-ASCII that canonicalises to a listed
        #: one holds its segment verbatim (canonical paths only drop segments and escape).
        self.url_tails: list[str] | None = None
        if self.url_hosts is not None:
            tails = (pl.Series(values, dtype=pl.String).str.extract(r"://[^/?#]*(/[^?#]*)", 1)
                     .str.extract(r"([^/]*)$", 1))
            if bool(tails.str.contains(r"^[A-Za-z0-9._~\-]{3,}$").fill_null(False).all()):
                self.url_tails = tails.unique().to_list()
        #: Skip working out every row's host (and so the "not a URL" count) when only a few
        #: rows can be on a listed host: set for incremental rebuilds, whose counts come from
        #: the previous build.
        self.prefilter = False
        #: Whether every listed host appears as such in an ASCII URL on it (not an IP
        #: address, whose canonical form a URL may spell in other ways, e.g. 0x7f.1).
        self.literal_hosts = self.url_hosts is not None and not bool(
            self.url_hosts.str.contains(r"^\[|(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)$").any())
        if isinstance(inner, PerceptualRule):
            # entry i of the inner index holds the i-th distinct key it was built from
            self.entries = pl.Series("value", keys_to_hex(
                np.ascontiguousarray(_unpack(inner.index.codes))).astype(str))

    @property
    def roles(self) -> tuple[str, ...]:
        return self.inner.roles

    @property
    def sources(self) -> list[int]:
        return sorted(self.owners["source"].unique().to_list())

    def match(self, view: BatchView) -> np.ndarray:
        if self.url_hosts is not None and isinstance(self.inner, ExactKeyRule):
            return self._match_urls(view, self.url_hosts, self.inner)
        hit = self.inner.match(view)
        found = view.distances.pop(id(self.inner), None)
        if found is not None:
            view.distances[id(self)] = found
        return hit

    def _match_urls(self, view: BatchView, url_hosts: pl.Series,
                    inner: ExactKeyRule) -> np.ndarray:
        """Exact URLs: a row's canonical URL can only equal a listed one if its host is a
        listed URL's host (hosts are cheap: no path canonicalisation), so only those rows are
        canonicalised and digested. Equal to digesting every row (the host of a canonical URL
        is the row's canonical host, tested in tests/test_urls.py)."""
        hit = np.zeros(view.num_rows, dtype=bool)
        hosts = url_hosts.implode()
        if view.has_hosts() or not (self.prefilter and self.literal_hosts):
            rows = view.rows_on_hosts(url_hosts)
        else:
            # Rows that could match. A URL "scheme://authority/..." whose authority is ASCII
            # without %-escapes holds its canonical host there verbatim (up to case); a URL
            # that is ASCII without %-escapes holds its canonical path's last segment verbatim.
            # Other URLs (other shapes too) are kept to be sure. One anchored regex finds the
            # plain ones (it stops at the authority's end) and literal searches the rest.
            urls = pl.Series(view.column("url")).cast(pl.String)
            rows = np.arange(len(urls))
            if self.url_tails is not None:
                # A listed URL's last segment (unreserved characters only) comes verbatim
                # from the URL's own path once escapes of unreserved characters are decoded
                # (canonicalisation only decodes those, escapes other characters, and drops
                # whole dot segments), so a URL without it cannot match. Literal searches
                # first (a URL without "%" decodes to itself), decoding only the others.
                # (tabs and newlines are removed anywhere: a URL with one keeps its chance)
                some = (urls.str.contains_any(self.url_tails)
                        | urls.str.contains(r"[%\t\n\r]")).fill_null(False)
                rows = some.arg_true().to_numpy()
                if len(rows):
                    decoded = decode_unreserved_escapes(urls.gather(rows)).str.replace_all(
                        r"[\t\n\r]", "")
                    rows = rows[decoded.str.contains_any(self.url_tails).fill_null(False)
                                .to_numpy()]
            if len(rows):
                some_urls = urls.gather(rows)
                maybe = ~some_urls.str.contains(_PLAIN_AUTHORITY) | some_urls.str.contains_any(
                    url_hosts.to_list(), ascii_case_insensitive=True)
                rows = rows[maybe.fill_null(False).to_numpy()]
            if len(rows):
                on = canonical_hosts(urls.gather(rows)).is_in(hosts).fill_null(False)
                rows = rows[on.to_numpy()]
        if len(rows):
            keys, valid = text_digest_keys(view.canonical_urls_of(rows))
            hit[rows] = inner.keys.contains(keys, valid)
        return hit

    def attribute(self, view: BatchView, hit: np.ndarray) -> dict[int, np.ndarray]:
        """Source id -> mask of the hit rows that source's own values match."""
        rows = np.flatnonzero(hit)
        pairs = self._pairs(view, rows)  # columns: row (index into rows), value or source
        if "source" not in pairs.columns:
            pairs = pairs.join(self.owners.select("value", "source"), on="value")
        out: dict[int, np.ndarray] = {}
        grouped = pairs.select("row", "source").unique().group_by("source").agg("row")
        for source, members in grouped.iter_rows():
            mask = np.zeros(len(hit), dtype=bool)
            mask[rows[np.asarray(members, dtype=np.int64)]] = True
            out[int(source)] = mask
        return out

    def item_pairs(self, view: BatchView, rows: np.ndarray) -> pl.DataFrame:
        """``(row, source, item)`` for each of the given rows (indices into the batch) and
        each item, by its position in ``values``, whose value matches it: the rows to count
        per item (only rows the rule hit are worth asking about: few)."""
        if not len(rows):
            return pl.DataFrame(schema={"row": pl.Int64, "source": pl.Int32, "item": pl.Int32})
        pairs = self._pairs(view, rows)
        if "item" not in pairs.columns:
            pairs = pairs.join(self.owners.select("value", "source", "item"), on="value")
        found = pairs.select("row", "source", "item").unique()
        return found.with_columns(pl.Series("row", rows[found["row"].to_numpy()]))

    def reason_of(self, source_id: int) -> Reason:
        return self.reasons[source_id]

    def _pairs(self, view: BatchView, rows: np.ndarray) -> pl.DataFrame:
        inner = self.inner
        if isinstance(inner, PerceptualRule):
            keys, valid = view.keys_for(self.key_type)
            found = inner.index.search(keys[rows], inner.radius, valid[rows])
            return pl.DataFrame({"row": found.query.astype(np.int64),
                                 "value": self.entries.gather(found.entry)})
        if isinstance(inner, ExactKeyRule) and self.type_name == "domain":
            return view.domain_pairs(rows)  # the digests of every suffix of each row's host
        if isinstance(inner, ExactKeyRule) and self.url_hosts is not None:
            keys, valid = text_digest_keys(view.canonical_urls_of(rows))
            return _hex_pairs(keys, valid)
        if isinstance(inner, ExactKeyRule):
            keys, valid = view.keys_for(self.key_type)
            frames = [_hex_pairs(keys[rows], valid[rows])]
            if issubclass(self.key_type, UrlDigestType):
                keys, valid = view.keys_for(self.key_type, canonical=True)
                frames.append(_hex_pairs(keys[rows], valid[rows]))
            return pl.concat(frames)
        if isinstance(inner, PrefixRule):
            urls = view.canonical_urls_of(rows)
            frame = pl.DataFrame({"row": np.arange(len(rows)), "url": urls,
                                  "host": hosts_of(urls)})
            return (frame.join(self.owners, on="host")
                    .filter(pl.col("url").str.starts_with(pl.col("value")))
                    .select("row", "source", "item"))
        if isinstance(inner, CaptionTermRule):
            return inner.term_pairs(pl.Series(view.column("caption")).cast(pl.String)
                                    .gather(rows))
        raise TypeError(f"no attribution for {type(inner).__name__}")

    def probe_bounds(self) -> ProbeBounds:
        """Exact URLs: rows on their hosts, whose URL ends with one of their segments; other
        item types: the inner rule's bounds."""
        if self.url_hosts is not None:
            digests, valid = text_digest_keys(self.url_hosts)
            return ProbeBounds(digests[valid], self.url_segments)
        return ProbeBounds(self.inner.probe_bounds().host_digests, self.url_segments)

    def prefiltered(self) -> AttributedRule:
        """A copy that skips working out every row's host (see ``prefilter``)."""
        rule = copy.copy(self)
        rule.prefilter = True
        return rule

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "source": self.source.label,
                "reasons": sorted({r.code for r in self.reasons.values()}),
                "attributed_to": len(self.sources)}


def _hex_pairs(keys: np.ndarray, valid: np.ndarray) -> pl.DataFrame:
    at = np.flatnonzero(valid)
    return pl.DataFrame({"row": at.astype(np.int64),
                         "value": keys_to_hex(keys[at]).astype(str)})


def _unpack(codes: np.ndarray) -> np.ndarray:
    """(n, words) uint64 codes back to (n, 8 * words) uint8 big-endian keys."""
    return codes.astype(">u8").view(np.uint8).reshape(len(codes), -1)
