"""Which list entries matched: per rule, per shard, as keyed ids that merge over shards.

A report counts, per list, the entries that matched no row: a typo, a list of the wrong type, a
column that never held what the list names. The kernel says which rows each rule hit; for those
rows only, :class:`RuleEntries` finds which of the rule's entries they match. Each shard records
them in its stats (so a resumed run counts the same) as *ids*, not positions: an entry's id is
its position in the rule's entries enciphered with AES-256 under a key derived from all of those
entries, so only someone holding the list can tell which entry an id stands for (a position in a
sorted list of hashes would give away the leading bits of a partner's hash). Ids are 63 bits
(JSON-safe); two entries of one list share an id with odds of about n^2 / 2^64.
"""

from __future__ import annotations

import hashlib
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl
import polars_hash as plh
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from scrub.engine.plan import MatchPlan
from scrub.engine.rules import (
    AllowRule,
    BatchView,
    CaptionTermRule,
    ExactKeyRule,
    KeyedRemovalRule,
    PerceptualRule,
    PrefixRule,
    Rule,
)
from scrub.keys import KeySet, keys_to_hex
from scrub.lists.types import SampleKey, TextDigestType, UrlDigestType

_TAG = b"scrub matched-entry ids v1\0"


class RuleEntries(ABC):
    """The entries of one rule: how many, which ones some rows match, and their text."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._key: bytes | None = None

    @abstractmethod
    def material(self) -> Iterable[bytes]:
        """Every entry (and the rule's kind), from which the ids' key is derived."""

    @abstractmethod
    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        """Positions (distinct, int64) of the entries that ``rows`` of ``view`` match."""

    @abstractmethod
    def values(self, positions: np.ndarray) -> list[str]:
        """The entries at ``positions`` as text (hex for binary keys), for public lists."""

    def ids(self, positions: np.ndarray) -> np.ndarray:
        """Keyed ids (uint64 below 2^63) of the entries at ``positions``."""
        if self._key is None:  # worked out on first use: reports only need the counts
            digest = hashlib.sha256(_TAG)
            for part in self.material():
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
            self._key = digest.digest()
        blocks = np.zeros((len(positions), 16), dtype=np.uint8)
        blocks[:, :8] = np.asarray(positions, dtype=">u8").view(np.uint8).reshape(-1, 8)
        encryptor = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        sealed = np.frombuffer(encryptor.update(blocks.tobytes()) + encryptor.finalize(),
                               dtype=np.uint8).reshape(-1, 16)
        return np.ascontiguousarray(sealed[:, :8]).view(">u8").ravel().astype(np.uint64) >> \
            np.uint64(1)


class KeySetEntries(RuleEntries):
    """Fixed-width keys (hashes, URL digests, url/host/domain digests, sample keys)."""

    def __init__(self, rule: ExactKeyRule | AllowRule) -> None:
        self.rule = rule
        self.keys: KeySet = rule.keys
        super().__init__(len(self.keys))

    def material(self) -> Iterable[bytes]:
        return [self.rule.key_type.name.encode(), self.keys.keys.tobytes()]

    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        key_type = self.rule.key_type
        if key_type.name == "domain":  # every listed suffix of the rows' hosts
            owner, keys, valid = view.host_suffix_keys()
            on = np.isin(owner, view.host_table()[0][rows])
            return _distinct(self.keys.index_of(keys[on], valid[on]))
        # A URL digest rule matches the stored URL or its canonical form; an allow rule the
        # stored one only.
        forms = ((False, True) if issubclass(key_type, UrlDigestType)
                 and isinstance(self.rule, ExactKeyRule) else (False,))
        found = []
        for canonical in forms:
            keys, valid = view.keys_for(key_type, canonical=canonical)
            found.append(self.keys.index_of(keys[rows], valid[rows]))
        return _distinct(np.concatenate(found))

    def values(self, positions: np.ndarray) -> list[str]:
        text = keys_to_hex(self.keys.keys[positions]).astype(str).tolist()
        key_type = self.rule.key_type
        if issubclass(key_type, TextDigestType) or key_type is SampleKey:
            # kept as the SHA-256 of their canonical text (the store keeps nothing else)
            return [f"sha256:{t}" for t in text]
        return text


class PerceptualEntries(RuleEntries):
    """Perceptual hashes: the index entries within the radius of the rows."""

    def __init__(self, rule: PerceptualRule) -> None:
        self.rule = rule
        codes = np.ascontiguousarray(rule.index.codes.astype(">u8")).view(np.uint8)
        self.codes = codes.reshape(len(rule.index), -1)
        super().__init__(len(rule.index))

    def material(self) -> Iterable[bytes]:
        return [self.rule.key_type.name.encode(), self.codes.tobytes()]

    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        keys, valid = view.keys_for(self.rule.key_type)
        found = self.rule.index.search(keys[rows], self.rule.radius, valid[rows])
        return _distinct(found.entry)

    def values(self, positions: np.ndarray) -> list[str]:
        return keys_to_hex(self.codes[positions]).astype(str).tolist()


class TextEntries(RuleEntries):
    """Entries kept as sorted text (URL prefixes, caption terms)."""

    def __init__(self, kind: str, texts: Iterable[str]) -> None:
        self.kind = kind
        self.texts = pl.Series("entry", sorted(set(texts)), dtype=pl.String)
        super().__init__(len(self.texts))

    def material(self) -> Iterable[bytes]:
        return [self.kind.encode(), *(t.encode() for t in self.texts.to_list())]

    def positions_of(self, values: pl.Series) -> np.ndarray:
        """Positions of ``values`` (each one of the entries) in the sorted entries."""
        values = values.drop_nulls().unique()
        at = self.texts.search_sorted(values, side="left").to_numpy().astype(np.int64)
        inside = at < len(self.texts)
        at, values = at[inside], values.filter(pl.Series(inside))
        same = (self.texts.gather(at) == values).to_numpy()
        return _distinct(at[same])

    def values(self, positions: np.ndarray) -> list[str]:
        return self.texts.gather(positions).to_list()


class PrefixEntries(TextEntries):
    """URL prefixes, every listed one (the rule itself keeps only those not covered by a
    shorter one): a URL matches the greatest listed prefix not above it, if that is a prefix
    of the URL, and every listed prefix of that one (its chain of parents)."""

    def __init__(self, rule: PrefixRule) -> None:
        super().__init__("url_prefix", rule.listed)
        self.parent: np.ndarray | None = None

    def _parents(self) -> np.ndarray:
        """parent[i]: the longest other listed prefix of entry i (-1 if none). Every listed
        prefix of an entry sorts before it, and is the entry just before it or one of that
        one's parents: one pass, in order."""
        texts = self.texts.to_list()
        parent = np.full(len(texts), -1, dtype=np.int64)
        for i in range(1, len(texts)):
            up = i - 1
            while up >= 0 and not texts[i].startswith(texts[up]):
                up = int(parent[up])
            parent[i] = up
        return parent

    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        urls = view.canonical_urls_of(rows).drop_nulls()
        if len(urls) == 0 or self.count == 0:
            return np.zeros(0, dtype=np.int64)
        if self.parent is None:
            self.parent = self._parents()
        at = self.texts.search_sorted(urls, side="right").to_numpy().astype(np.int64) - 1
        found = []
        live = at >= 0
        while live.any():  # walk up the chains, all rows at once (depth = nesting of prefixes)
            which = np.flatnonzero(live)
            candidate = self.texts.gather(at[which])
            starts = (urls.gather(which).str.starts_with(pl.lit(candidate))
                      .fill_null(False).to_numpy())
            found.append(at[which[starts]])
            at[which] = self.parent[at[which]]
            live = at >= 0
        return _distinct(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


class CaptionEntries(TextEntries):
    """Caption terms: the terms each hit caption holds as the rule matches them."""

    def __init__(self, rule: CaptionTermRule) -> None:
        super().__init__("caption_term", rule.terms)
        self.rule = rule

    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        captions = pl.Series(view.column("caption")).cast(pl.String).gather(rows)
        return self.positions_of(self.rule.term_pairs(captions)["value"])


class RemovalEntries(RuleEntries):
    """A release's removal list: keyed digests per column kind."""

    def __init__(self, rule: KeyedRemovalRule) -> None:
        self.rule = rule
        self.parts = {name: values.unique().sort() for name, values in
                      sorted(rule.digests.items())}
        # One more running total than parts (the last is the sum): zip drops it.
        self.offsets = dict(zip(self.parts, np.cumsum([0] + [len(v) for v in
                                                              self.parts.values()]).tolist(),
                                strict=False))
        super().__init__(sum(len(v) for v in self.parts.values()))

    def material(self) -> Iterable[bytes]:
        return [f"{name}:{v}".encode() for name, values in self.parts.items()
                for v in values.to_list()]

    def matched(self, view: BatchView, rows: np.ndarray) -> np.ndarray:
        found = []
        for name, digests in self.parts.items():
            if name == "url":
                values = view.canonical_urls_of(rows)
            elif view.roles.get(name):
                values = view.digest_text(name).gather(rows)
            else:
                continue
            keyed = pl.DataFrame({"v": values}).select(
                plh.col("v").chash.hmac_sha256(key=self.rule.key)).to_series().drop_nulls()
            at = digests.search_sorted(keyed, side="left").to_numpy().astype(np.int64)
            inside = at < len(digests)
            same = np.zeros(len(at), dtype=bool)
            same[inside] = (digests.gather(at[inside]) == keyed.filter(pl.Series(inside))
                            ).to_numpy()
            found.append(at[same] + self.offsets[name])
        return _distinct(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def values(self, positions: np.ndarray) -> list[str]:
        raise TypeError("removal lists are never named")


_CACHE: weakref.WeakKeyDictionary[object, RuleEntries | None] = weakref.WeakKeyDictionary()


def entries_of(rule: Rule | AllowRule) -> RuleEntries | None:
    """The entries of ``rule`` (built once per rule object), or None for rules whose matches
    are not entries of a list (scores, combinations, ledger requests)."""
    if rule in _CACHE:
        return _CACHE[rule]
    entries: RuleEntries | None = None
    if type(rule) is ExactKeyRule or type(rule) is AllowRule:
        entries = KeySetEntries(rule)
    elif type(rule) is PerceptualRule:
        entries = PerceptualEntries(rule)
    elif type(rule) is PrefixRule:
        entries = PrefixEntries(rule)
    elif type(rule) is CaptionTermRule:
        entries = CaptionEntries(rule)
    elif type(rule) is KeyedRemovalRule:
        entries = RemovalEntries(rule)
    _CACHE[rule] = entries
    return entries


def _tracked(plan: MatchPlan) -> list[tuple[int, Rule | AllowRule]]:
    """(source id, rule) of every rule and allow rule of the plan."""
    return ([(rule.source.id, rule) for rule in plan.rules]
            + [(allow.source.id, allow) for allow in plan.allow])


def entry_totals(plan: MatchPlan) -> dict[int, int]:
    """Source id -> how many entries its rules hold, for the sources whose every rule's
    entries are tracked (lists; not ledger requests or score thresholds)."""
    totals: dict[int, int] = {}
    untracked: set[int] = set()
    for source_id, rule in _tracked(plan):
        entries = entries_of(rule)
        if entries is None:
            untracked.add(source_id)
        else:
            totals[source_id] = totals.get(source_id, 0) + entries.count
    return {s: n for s, n in totals.items() if s not in untracked}


def unmatched_values(plan: MatchPlan, matched: Mapping[str, set[int]],
                     labels: Iterable[str]) -> dict[str, list[str]]:
    """The entries that matched nothing of the sources labelled ``labels``, as text (sorted):
    only ever called for public lists."""
    wanted = set(labels)
    sources = {s.id: s for s in plan.sources}
    out: dict[str, list[str]] = {}
    for source_id, rule in _tracked(plan):
        source = sources.get(source_id)
        if source is None or source.label not in wanted:
            continue
        entries = entries_of(rule)
        if entries is None or entries.count == 0:
            continue
        positions = np.arange(entries.count, dtype=np.int64)
        seen = np.array(sorted(matched.get(source.label, ())), dtype=np.uint64)
        missing = positions[~np.isin(entries.ids(positions), seen)]
        out.setdefault(source.label, []).extend(entries.values(missing))
    return {label: sorted(values) for label, values in out.items()}


def _distinct(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64)
    return np.unique(positions[positions >= 0])


__all__ = ["RuleEntries", "entries_of", "entry_totals", "unmatched_values"]
