"""Rules: what to match, why (a reason code) and because of whom (a source).

A rule is one small class with a ``match`` method over a :class:`BatchView`; the kernel ORs the
masks. Adding a match kind is adding a rule class, not an ``elif`` in the kernel.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import polars_hash as plh

from scrub.engine.hamming import HammingIndex
from scrub.engine.reasons import Reason
from scrub.engine.view import BatchView
from scrub.keys import KeySet
from scrub.lists.types import (
    WHITESPACE_RUN,
    KeyType,
    UrlDigestType,
    fold_terms,
    fold_text,
    text_digest_keys,
)
from scrub.urls import (
    canonicalize_urls,
    hosts_of,
)


@dataclass(frozen=True)
class Source:
    """Where a rule comes from: a list (label + file digest) or, later, a ledger request.

    ``details`` is a value-free description (entry counts, format) for reports.
    """

    id: int
    label: str
    kind: str
    digest: str
    sensitive: bool = True
    details: tuple[tuple[str, object], ...] = ()
    #: The list's name without its version (what allow-lists name in ``suppresses``).
    name: str = ""


@dataclass(frozen=True)
class ProbeBounds:
    """What bounds a rule's matches, for the probe sets of incremental release rebuilds:
    ``host_digests``, SHA-256 digests (n, 32) of the hosts and domains outside which it matches
    no row; ``url_segments``, the last path segments of the canonical URLs it matches (only
    rows whose URL ends with one can match). None: not bounded that way."""

    host_digests: np.ndarray | None = None
    url_segments: pl.Series | None = None


class Rule(ABC):
    """A match with a reason and a source."""

    def __init__(self, reason: Reason, source: Source) -> None:
        self.reason = reason
        self.source = source

    @property
    @abstractmethod
    def roles(self) -> tuple[str, ...]:
        """Column roles the rule reads."""

    @abstractmethod
    def match(self, view: BatchView) -> np.ndarray:
        """Boolean mask of the rows this rule drops."""

    def match_rows(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        """:meth:`match` of some rows only (a mask over ``rows``); rules whose cost is per row
        override it to work on those rows alone."""
        return self.match(view)[rows]

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """A value-free description (kind, reason, source, sizes) for fingerprints and reports."""

    def attribute(self, view: BatchView, hit: np.ndarray) -> dict[int, np.ndarray]:
        """Source id -> the rows of ``hit`` due to that source: all of them to the rule's one
        source, unless the rule serves many (ledger requests)."""
        return {self.source.id: hit}

    def reason_of(self, source_id: int) -> Reason:
        """The reason given to the rows a source matched."""
        return self.reason

    def probe_bounds(self) -> ProbeBounds:
        """The hosts and URL tails outside which this rule matches no row (default: none)."""
        return ProbeBounds()

    def prefiltered(self) -> Rule:
        """This rule for a run that needs no count of the rows it cannot match (an
        incremental rebuild, whose counts come from the previous build): it may skip work on
        them. Default: the rule itself."""
        return self


class ExactKeyRule(Rule):
    """Exact membership of a row's key (a content hash or a URL digest) in a set of keys."""

    def __init__(self, key_type: type[KeyType], keys: KeySet, reason: Reason,
                 source: Source) -> None:
        super().__init__(reason, source)
        self.key_type = key_type
        self.keys = keys

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.key_type.target,)

    def match(self, view: BatchView) -> np.ndarray:
        if self.key_type.name in ("host", "domain"):
            return self._match_distinct(view)
        keys, valid = view.keys_for(self.key_type)
        hit = self.keys.contains(keys, valid)
        if issubclass(self.key_type, UrlDigestType):
            # A URL digest matches the URL as stored or its canonical form.
            keys, valid = view.keys_for(self.key_type, canonical=True)
            hit |= self.keys.contains(keys, valid)
        return hit

    def _match_distinct(self, view: BatchView) -> np.ndarray:
        # Hosts repeat a lot: digest and look up each distinct host (for a domain, each of its
        # suffixes) once, then mark the rows on a listed one.
        if self.key_type.name == "domain":
            return view.rows_in_domains(self.keys)
        codes, distinct = view.host_table()
        keys, valid = text_digest_keys(distinct)
        return np.append(self.keys.contains(keys, valid), False)[codes]

    def describe(self) -> dict[str, object]:
        return {"kind": "exact_key", "type": self.key_type.name, "reason": self.reason.code,
                "source": self.source.label, "entries": len(self.keys)}

    def probe_bounds(self) -> ProbeBounds:
        if self.key_type.name in ("host", "domain"):
            return ProbeBounds(self.keys.keys)  # digests of the listed hosts / domains
        return ProbeBounds()


class PrefixRule(Rule):
    """Canonical URLs starting with any of a set of canonical prefixes.

    The prefixes are reduced to a prefix-free sorted set (a prefix covered by a shorter one is
    dropped); then the only prefix that can match a URL is the greatest one not above it, found
    for a whole column at once with ``search_sorted`` and checked with ``starts_with``.
    """

    def __init__(self, prefixes: Sequence[str], source: Source) -> None:
        super().__init__(Reason.OPTOUT_PREFIX, source)
        # Stored prefixes are canonical text, maybe under an older canonical form
        # (scrub.urls.URL_FORM): read them as today's.
        canonical = canonicalize_urls(pl.Series(list(prefixes), dtype=pl.String)).drop_nulls()
        #: Every listed prefix, covered ones too (counted as entries of the list).
        self.listed = sorted(set(canonical.to_list()))
        kept: list[str] = []
        for prefix in self.listed:
            if not kept or not prefix.startswith(kept[-1]):
                kept.append(prefix)
        self.prefixes = pl.Series("prefix", kept, dtype=pl.String)
        self.hosts = hosts_of(self.prefixes).drop_nulls().unique().sort()

    @property
    def roles(self) -> tuple[str, ...]:
        return ("url",)

    def match(self, view: BatchView) -> np.ndarray:
        hit = np.zeros(view.num_rows, dtype=bool)
        if len(self.prefixes) == 0:
            return hit
        # Only rows on a host some prefix names need their canonical URL.
        rows = view.rows_on_hosts(self.hosts)
        if len(rows) == 0:
            return hit
        urls = view.canonical_urls_of(rows)
        at = self.prefixes.search_sorted(urls.fill_null(""), side="right").cast(pl.Int64) - 1
        candidate = self.prefixes.gather(at.clip(0, None))
        matched = pl.select((at >= 0) & urls.is_not_null()
                            & urls.str.starts_with(pl.lit(candidate))).to_series()
        hit[rows[matched.fill_null(False).to_numpy()]] = True
        return hit

    def describe(self) -> dict[str, object]:
        return {"kind": "prefix", "reason": self.reason.code, "source": self.source.label,
                "entries": len(self.prefixes)}

    def probe_bounds(self) -> ProbeBounds:
        digests, valid = text_digest_keys(self.hosts)
        return ProbeBounds(digests[valid])


class PerceptualRule(Rule):
    """Perceptual hashes within a Hamming radius of a list entry (PDQ, pHash, dHash).

    Exact radius search through :class:`~scrub.engine.hamming.HammingIndex` (equal to brute
    force). For PDQ, rows whose ``pdq_quality`` column (when the dataset has one) is below the
    quality floor cannot match: low-quality PDQ hashes (flat or tiny images) collide too easily.
    """

    def __init__(self, key_type: type[KeyType], index: HammingIndex, radius: int,
                 source: Source, *, quality_floor: int | None = None) -> None:
        super().__init__(Reason.PERCEPTUAL_HASH, source)
        self.key_type = key_type
        self.index = index
        self.radius = radius
        self.quality_floor = quality_floor

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.key_type.target,)

    def match(self, view: BatchView) -> np.ndarray:
        keys, valid = view.keys_for(self.key_type)
        if self.quality_floor is not None and view.roles.get("pdq_quality"):
            quality = pl.Series(view.column("pdq_quality")).cast(pl.Float64, strict=False)
            valid = valid & (quality >= self.quality_floor).fill_null(False).to_numpy()
        found = self.index.search(keys, self.radius, valid)
        hit = np.zeros(view.num_rows, dtype=bool)
        hit[found.query] = True
        if len(found.query):
            order = np.lexsort((found.distance, found.query))
            rows, first = np.unique(found.query[order], return_index=True)
            view.distances[id(self)] = (rows, found.distance[order][first].astype(np.int16))
        return hit

    def describe(self) -> dict[str, object]:
        return {"kind": "hamming", "type": self.key_type.name, "reason": self.reason.code,
                "source": self.source.label, "entries": len(self.index),
                "radius": self.radius, "quality_floor": self.quality_floor}


class CaptionTermRule(Rule):
    """Captions holding any of a set of literal terms as whole words, by meaning rather than
    spelling: captions and terms are compared folded (ignorables removed, NFKC, case-folded: see
    :func:`~scrub.lists.types.fold_text`), with any run of Unicode whitespace between a term's
    words. "Ann Lee" matches "Photo of ANN  LEE, 2019" (or a newline or no-break space between
    the words) but not "Joann Leeds".

    An Aho-Corasick scan (``contains_any``) of the folded captions for the longest word of each
    term finds candidate rows; on those alone, whitespace runs become one space and a regex
    checks that a term stands between non-word characters (or the text's ends).
    """

    def __init__(self, terms: Sequence[str], reason: Reason, source: Source) -> None:
        super().__init__(reason, source)
        folded = fold_terms(pl.Series(list(terms), dtype=pl.String)).drop_nulls()
        self.terms = sorted(set(folded.to_list()) - {""})
        self._anchors = sorted({max(t.split(" "), key=len) for t in self.terms})
        alternatives = "|".join(re.escape(t) for t in sorted(self.terms, key=len, reverse=True))
        self._pattern = f"(?:^|[^\\w])(?:{alternatives})(?:[^\\w]|$)"

    @property
    def roles(self) -> tuple[str, ...]:
        return ("caption",)

    def match(self, view: BatchView) -> np.ndarray:
        return self._match(pl.Series(view.column("caption")), view.num_rows)

    def match_rows(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        return self._match(pl.Series(view.column("caption")).gather(rows), len(rows))

    def _match(self, column: pl.Series, count: int) -> np.ndarray:
        hit = np.zeros(count, dtype=bool)
        if not self.terms:
            return hit
        captions = fold_text(column)
        rows = captions.str.contains_any(self._anchors).fill_null(False).arg_true()
        if len(rows):
            spaced = captions.gather(rows).str.replace_all(WHITESPACE_RUN, " ")
            confirmed = spaced.str.contains(self._pattern).fill_null(False)
            hit[rows.filter(confirmed).to_numpy()] = True
        return hit

    def term_pairs(self, captions: pl.Series) -> pl.DataFrame:
        """``(row, value)`` for each caption (``row`` its position) and each term it holds as
        whole words, compared as :meth:`match` compares them (for attribution: few rows)."""
        if not self.terms:
            return pl.DataFrame(schema={"row": pl.Int64, "value": pl.String})
        spaced = fold_text(captions).str.replace_all(WHITESPACE_RUN, " ")
        frame = (pl.DataFrame({"row": np.arange(len(captions), dtype=np.int64),
                               "caption": spaced})
                 .with_columns(value=pl.col("caption").str.extract_many(self.terms,
                                                                        overlapping=True))
                 .explode("value").drop_nulls("value").unique(["row", "value"]))
        bounded = frame.with_columns(pattern=pl.lit(r"(?:^|[^\w])")
                                     + pl.col("value").map_elements(re.escape,
                                                                    return_dtype=pl.String)
                                     + pl.lit(r"(?:[^\w]|$)"))
        return (bounded.filter(pl.col("caption").str.contains(pl.col("pattern")))
                .select("row", "value"))

    def describe(self) -> dict[str, object]:
        return {"kind": "caption_terms", "reason": self.reason.code,
                "source": self.source.label, "entries": len(self.terms)}


class ScoreRule(Rule):
    """Rows whose score column (``punsafe``, ``pwatermark``...) is above a threshold."""

    def __init__(self, role: str, threshold: float, reason: Reason, source: Source) -> None:
        super().__init__(reason, source)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("a score threshold lies between 0 and 1")
        self.role = role
        self.threshold = threshold

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role,)

    def match(self, view: BatchView) -> np.ndarray:
        scores = pl.Series(view.column(self.role)).cast(pl.Float64, strict=False)
        view.unmatchable[view.roles.get(self.role) or self.role] = (
            scores.null_count() + int(scores.is_nan().fill_null(False).sum()))
        return ((scores > self.threshold) & ~scores.is_nan()).fill_null(False).to_numpy()

    def describe(self) -> dict[str, object]:
        return {"kind": "score", "role": self.role, "above": self.threshold,
                "reason": self.reason.code, "source": self.source.label}


class KeyedRemovalRule(Rule):
    """A release's removal list: rows whose canonical URL, md5 or sha256 has an HMAC-SHA256
    (under the list's published key) in the list. Columns the dataset lacks are skipped."""

    def __init__(self, key: str, digests: dict[str, Sequence[str]], source: Source) -> None:
        super().__init__(Reason.RELEASE_REMOVAL, source)
        self.key = key
        self.digests = {name: pl.Series(name, list(values), dtype=pl.String)
                        for name, values in digests.items() if len(values)}

    @property
    def roles(self) -> tuple[str, ...]:
        return ("url",) if "url" in self.digests else ()

    def match(self, view: BatchView) -> np.ndarray:
        hit = np.zeros(view.num_rows, dtype=bool)
        for name, digests in self.digests.items():
            if name == "url":
                values = view.canonical_urls()
            elif view.roles.get(name):
                values = view.digest_text(name)
            else:
                continue
            keyed = pl.DataFrame({"v": values}).select(
                plh.col("v").chash.hmac_sha256(key=self.key)).to_series()
            hit |= keyed.is_in(digests.implode()).fill_null(False).to_numpy()
        return hit

    def describe(self) -> dict[str, object]:
        return {"kind": "removal_list", "reason": self.reason.code, "source": self.source.label,
                "entries": {name: len(values) for name, values in self.digests.items()}}


class AllOf(Rule):
    """Rows every child rule matches (e.g. p_unsafe > 0.95 AND a keyword in the caption)."""

    def __init__(self, children: Sequence[Rule], reason: Reason, source: Source) -> None:
        super().__init__(reason, source)
        self.children = list(children)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted({role for child in self.children for role in child.roles}))

    def match(self, view: BatchView) -> np.ndarray:
        # each child after the first looks only at the rows still in (a caption rule after a
        # score threshold reads a few captions, not every one)
        hit = self.children[0].match(view) if self.children else np.ones(view.num_rows, bool)
        for child in self.children[1:]:
            rows = np.flatnonzero(hit)
            if len(rows) == 0:
                break
            hit = np.zeros(view.num_rows, dtype=bool)
            hit[rows[child.match_rows(view, rows)]] = True
        return hit

    def describe(self) -> dict[str, object]:
        return {"kind": "all_of", "reason": self.reason.code, "source": self.source.label,
                "children": [c.describe() for c in self.children]}


class AllowRule:
    """An allow-list ("negative bank"): values of one key type whose matches by the named lists
    are known false positives. It drops nothing; the kernel clears the matches it covers and
    counts them as suppressed."""

    def __init__(self, key_type: type[KeyType], keys: KeySet, suppresses: frozenset[str],
                 source: Source) -> None:
        self.key_type = key_type
        self.keys = keys
        self.suppresses = suppresses
        self.source = source

    def covers(self, rule: Rule) -> bool:
        return (isinstance(rule, ExactKeyRule) and rule.key_type is self.key_type
                and rule.source.name in self.suppresses)

    def match(self, view: BatchView) -> np.ndarray:
        if self.key_type.name == "domain":  # as domain rules match: the domain and under it
            return view.rows_in_domains(self.keys)
        keys, valid = view.keys_for(self.key_type)
        return self.keys.contains(keys, valid)

    def describe(self) -> dict[str, object]:
        return {"kind": "allow", "type": self.key_type.name, "source": self.source.label,
                "suppresses": sorted(self.suppresses), "entries": len(self.keys)}
