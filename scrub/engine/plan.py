"""The match plan: the rules compiled from the selected lists (and, later, ledger and policy)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from scrub.engine.hamming import HammingIndex
from scrub.engine.reasons import Reason
from scrub.engine.rules import (
    AllowRule,
    CaptionTermRule,
    ExactKeyRule,
    KeyedRemovalRule,
    PerceptualRule,
    PrefixRule,
    Rule,
    Source,
)
from scrub.engine.warmup import announce
from scrub.errors import ExternalSourceError, UserInputError
from scrub.keys import KeySet
from scrub.lists.hashlist import HashList, ListFormat, public_by_default, read_hashlist
from scrub.lists.store import ListStore, ListVersion, stale_url_digests
from scrub.lists.types import CaptionTerm, UrlDigestType, UrlPrefix, get_type
from scrub.urls import URL_FORM


@dataclass
class MatchPlan:
    """A set of rules with their sources. Picklable, so executors can ship it to workers."""

    sources: list[Source] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    allow: list[AllowRule] = field(default_factory=list)
    #: Score columns kept beside the dataset: role -> folder of one parquet per shard
    #: (see :mod:`scrub.engine.scores`).
    scores: dict[str, str] = field(default_factory=dict)

    def required_roles(self) -> set[str]:
        return {role for rule in self.rules for role in rule.roles}

    def fingerprint(self) -> str:
        """sha256 over the rules' value-free descriptions and the sources' file digests."""
        body = {
            "sources": [{"label": s.label, "kind": s.kind, "digest": s.digest}
                        for s in self.sources],
            "rules": [r.describe() for r in self.rules],
            "allow": [a.describe() for a in self.allow],
        }
        if self.scores:
            body["scores"] = {role: _folder_digest(Path(folder))
                              for role, folder in sorted(self.scores.items())}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _folder_digest(folder: Path) -> str:
    """What a resumed run must see unchanged in a scores folder: its files' names, sizes and
    modification times."""
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                     for p in folder.glob("*.parquet")) if folder.is_dir() else []
    return hashlib.sha256(json.dumps([str(folder.resolve()), entries]).encode()).hexdigest()


@dataclass(frozen=True)
class MatchOptions:
    """Settings of the perceptual rules: Hamming radii and the PDQ quality floor."""

    pdq_radius: int = 31
    phash_radius: int = 8
    pdq_quality_floor: int = 50

    def radius(self, type_name: str) -> int:
        return self.pdq_radius if type_name == "pdq" else self.phash_radius


def plan_from_hashlists(lists: Sequence[HashList], *,
                        allow: Sequence[tuple[HashList, Sequence[str]]] = (),
                        names: Sequence[str] | None = None,
                        sensitive: Sequence[bool] | None = None,
                        options: MatchOptions | None = None) -> MatchPlan:
    """One rule per (list, type), plus allow rules suppressing matches of the named lists.

    ``names`` are the lists' names for ``suppresses`` (default: their labels).
    """
    plan = MatchPlan()
    labels = _unique_labels([hl.label for hl in lists])
    for index, (hashlist, label) in enumerate(zip(lists, labels, strict=True)):
        details = tuple(sorted((k, v) for k, v in hashlist.describe().items() if k != "label"))
        source = Source(id=len(plan.sources), label=label, kind="hashlist",
                        digest=hashlist.sha256,
                        sensitive=True if sensitive is None else sensitive[index],
                        details=details, name=names[index] if names else label)
        plan.sources.append(source)
        for type_name, keys in sorted(hashlist.keys.items()):
            plan.rules.append(_rule(type_name, keys, source, options))
    for hashlist, suppresses in allow:
        source = Source(id=len(plan.sources), label=hashlist.label, kind="allowlist",
                        digest=hashlist.sha256, sensitive=False, name=hashlist.label)
        plan.sources.append(source)
        for type_name, keys in sorted(hashlist.keys.items()):
            key_type = get_type(type_name)
            if key_type.textual:
                raise UserInputError(f"{hashlist.label}: an allow-list cannot hold {type_name} "
                                     "entries", hint="allow exact values (hashes, URLs, hosts)")
            plan.allow.append(AllowRule(key_type, KeySet(keys), frozenset(suppresses), source))
    return plan


def _rule(type_name: str, keys: np.ndarray, source: Source, options: MatchOptions | None,
          reason: Reason | None = None) -> Rule:
    """The rule matching ``keys`` of one type; ``reason`` overrides the type's own (ledger
    requests give their kind as the reason)."""
    key_type = get_type(type_name)
    if key_type.target in PERCEPTUAL_TARGETS:
        settings = options or MatchOptions()
        rule: Rule = PerceptualRule(
            key_type, HammingIndex(keys), settings.radius(type_name), source,
            quality_floor=settings.pdq_quality_floor if type_name == "pdq" else None)
    elif key_type is UrlPrefix:
        rule = PrefixRule(list(keys), source)
    elif key_type is CaptionTerm:
        rule = CaptionTermRule(list(keys), Reason.CAPTION_TERM, source)
    else:
        rule = ExactKeyRule(key_type, KeySet(keys), _REASONS.get(
            type_name, Reason.URL_HASH if issubclass(key_type, UrlDigestType)
            else Reason.CONTENT_HASH), source)
    if reason is not None:
        rule.reason = reason
    return rule


#: Reason of each request kind.
REQUEST_REASONS = {"gdpr_erasure": Reason.GDPR_ERASURE, "copyright": Reason.COPYRIGHT,
                   "safety": Reason.SAFETY, "other": Reason.OTHER_REQUEST}


def add_ledger_rules(plan: MatchPlan, items: Iterable[tuple[int, str, str, str]], *,
                     watermark: tuple[int, str], options: MatchOptions | None = None) -> None:
    """Rules from the ledger's enforced requests: (request id, kind, item type, value) rows.

    One source per request (label ``request N``, sensitive: items name people), its kind as
    the reason of the rows it matches. Matching runs one rule per item type over the values of
    all those requests, however many there are; the rows it hits are attributed to each request
    whose own values they match, with that request's reason (:class:`AttributedRule`).
    """
    from scrub.engine.attribution import AttributedRule

    digest = f"ledger:{watermark[0]}:{watermark[1]}"
    source_of: dict[int, Source] = {}
    reasons: dict[int, Reason] = {}
    grouped: dict[str, tuple[list[str], list[int]]] = {}
    for request_id, kind, type_name, value in items:
        source = source_of.get(request_id)
        if source is None:
            source = source_of[request_id] = Source(
                id=len(plan.sources), label=f"request {request_id}", kind="request",
                digest=digest, sensitive=True, details=(("request", request_id), ("kind", kind)),
                name=f"request {request_id}")
            plan.sources.append(source)
            reasons[source.id] = REQUEST_REASONS[kind]
        values, owners = grouped.setdefault(type_name, ([], []))
        values.append(value)
        owners.append(source.id)
    for type_name, (values, owners) in sorted(grouped.items()):
        key_type = get_type(type_name)
        distinct = pl.Series(values, dtype=pl.String).unique(maintain_order=True)
        keys, valid = key_type.normalize_column(distinct)
        keys = keys[valid]
        if not key_type.textual:  # one index entry per distinct key
            keys = np.unique(keys, axis=0) if len(keys) else keys
        group = Source(id=-1, label=f"ledger {type_name}", kind="ledger", digest=digest,
                       sensitive=True, name="ledger")
        inner = _rule(type_name, keys, group, options, reasons[owners[0]])
        plan.rules.append(AttributedRule(inner, type_name, values, owners, group,
                                         {o: reasons[o] for o in set(owners)}))


#: Column roles of perceptual hashes, matched within a Hamming radius.
PERCEPTUAL_TARGETS = frozenset({"pdq", "phash", "dhash"})
_REASONS = {"url": Reason.OPTOUT_URL, "host": Reason.OPTOUT_HOST, "domain": Reason.OPTOUT_DOMAIN,
            "laion_hash": Reason.LAION_HASH, "sample_key": Reason.SAMPLE_KEY}


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # read_hashlist names the problem


def _unique_labels(labels: list[str]) -> list[str]:
    """Disambiguate repeated labels (two files called ``list.txt``) with ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def _check_url_form(meta: ListVersion) -> None:
    """Refuse a stored list whose url/host/domain digests were made under another canonical
    URL form: an entry of a class whose form changed would silently match nothing."""
    if stale_url_digests(meta):
        raise ExternalSourceError(
            f"{meta.ref}: its url/host/domain entries were stored under canonical URL form "
            f"{meta.url_form or 1}; this scrub matches form {URL_FORM}, under which some "
            "spellings (user info, escapes or numbers in hosts, backslashes...) canonicalise "
            "differently, so those entries would match nothing",
            hint=f"re-import the list from its source file as a new version (scrub lists import "
                 f"FILE --name {meta.name} --version NEW); see README, URL canonicalisation")


def plan_for_apply(files: Sequence[Path], refs: Sequence[str], *, store: ListStore | None = None,
                   key: bytes | None = None, type_name: str | None = None,
                   fmt: ListFormat = ListFormat.auto, site: str | None = None,
                   options: MatchOptions | None = None,
                   file_types: Sequence[str | None] | None = None) -> MatchPlan:
    """The plan of ``scrub apply``: hash-list files plus stored lists (``NAME[@VERSION]``).

    ``file_types`` gives each file's type of plain values (None: ``type_name``). A file whose
    entries are all opt-outs (url, url_prefix, host, domain) is public, as ``lists import``
    would store it; any other is sensitive.

    Stored allow-lists take part automatically when they suppress a selected list (their latest
    version); naming an allow-list in ``refs`` selects it explicitly. Every list is read and
    validated here, before anything is written.
    """
    from scrub.engine.removals import removal_keys

    if type_name is not None:
        announce([type_name])
    typed = list(zip(files, file_types or [None] * len(files), strict=True))
    removal_lists = [(f, removals_key) for f in files
                     if (removals_key := removal_keys(Path(f))) is not None]
    typed = [(f, t) for f, t in typed if all(f is not r for r, _ in removal_lists)]
    lists = _read_files(typed, type_name=type_name, fmt=fmt, site=site)
    names = [hl.label for hl in lists]
    sensitive = [not public_by_default(hl.keys) for hl in lists]
    allow: list[tuple[HashList, list[str]]] = []
    if refs:
        for meta, stored in _stored_lists(store or ListStore(), refs, key):
            if meta.kind == "allow":
                allow.append((stored, meta.suppresses))
            else:
                lists.append(stored)
                names.append(meta.name)
                sensitive.append(meta.sensitive)
    plan = plan_from_hashlists(lists, allow=allow, names=names, sensitive=sensitive,
                               options=options)
    for path, removals_key in removal_lists:  # a release's removal list (scrub/release)
        _add_removal_list(plan, Path(path), removals_key)
    return plan


def _read_files(typed: Sequence[tuple[Path, str | None]], *, type_name: str | None,
                fmt: ListFormat, site: str | None) -> list[HashList]:
    """The hash-list files, each with its type of plain values, in the order given.

    Smallest files first: their entry types (opt-out lists are usually the small ones) are
    announced early, so workers prepare while the big lists are parsed."""
    order = sorted(range(len(typed)), key=lambda i: _size(typed[i][0]))
    read: dict[int, HashList] = {}
    for index in order:
        path, file_type = typed[index]
        read[index] = read_hashlist(path, type_name=file_type or type_name, fmt=fmt, site=site,
                                    on_type=lambda name: announce([name]))
    return [read[i] for i in range(len(typed))]


def _stored_lists(store: ListStore, refs: Sequence[str], key: bytes | None
                  ) -> list[tuple[ListVersion, HashList]]:
    """The stored lists ``refs`` names, then the latest version of every stored allow-list that
    suppresses one of the selected block lists and is not named itself."""
    chosen = [store.resolve(ref) for ref in refs]
    announce({type_name for meta in chosen for type_name in meta.counts})
    out: list[tuple[ListVersion, HashList]] = []
    for meta in chosen:
        _check_url_form(meta)
        out.append((meta, store.load(meta.ref, key=key).as_hashlist()))
    block_names = {m.name for m in chosen if m.kind == "block"}
    explicit = {m.name for m in chosen if m.kind == "allow"}
    for name, versions in sorted(store.catalog().items()):
        latest = versions[-1]
        if latest.kind == "allow" and name not in explicit \
                and block_names & set(latest.suppresses):
            _check_url_form(latest)
            out.append((latest, store.load(latest.ref, key=key).as_hashlist()))
    return out


def _add_removal_list(plan: MatchPlan, path: Path, removals_key: str) -> None:
    """A release's removal list (written by :mod:`scrub.release`) as a rule of its own."""
    from scrub.atomic import file_sha256
    from scrub.engine.removals import removal_sets

    source = Source(id=len(plan.sources), label=path.name, kind="removal_list",
                    digest=file_sha256(path), sensitive=True, name=path.name)
    plan.sources.append(source)
    plan.rules.append(KeyedRemovalRule(removals_key, removal_sets(path), source))
