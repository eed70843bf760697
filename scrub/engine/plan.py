"""The match plan: the rules compiled from the selected lists (and, later, ledger and policy)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from scrub.engine.reasons import Reason
from scrub.engine.rules import ExactKeyRule, PrefixRule, Rule, Source
from scrub.errors import UserInputError
from scrub.keys import KeySet
from scrub.lists.hashlist import HashList
from scrub.lists.types import UrlDigestType, UrlPrefix, get_type


@dataclass
class MatchPlan:
    """A set of rules with their sources. Picklable, so executors can ship it to workers."""

    sources: list[Source] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def required_roles(self) -> set[str]:
        return {role for rule in self.rules for role in rule.roles}

    def fingerprint(self) -> str:
        """sha256 over the rules' value-free descriptions and the sources' file digests."""
        body = {
            "sources": [{"label": s.label, "kind": s.kind, "digest": s.digest}
                        for s in self.sources],
            "rules": [r.describe() for r in self.rules],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def plan_from_hashlists(lists: Sequence[HashList]) -> MatchPlan:
    """One exact-key rule per (list, type): content hashes and URL digests."""
    plan = MatchPlan()
    labels = _unique_labels([hl.label for hl in lists])
    for hashlist, label in zip(lists, labels):
        details = tuple(sorted((k, v) for k, v in hashlist.describe().items() if k != "label"))
        source = Source(id=len(plan.sources), label=label, kind="hashlist",
                        digest=hashlist.sha256, sensitive=True, details=details)
        plan.sources.append(source)
        for type_name, keys in sorted(hashlist.keys.items()):
            key_type = get_type(type_name)
            if key_type.target in PERCEPTUAL_TARGETS:
                raise UserInputError(
                    f"{hashlist.path}: {type_name} entries need perceptual (Hamming radius) "
                    "matching, which scrub apply does not do yet",
                    hint="remove the perceptual entries or match them exactly elsewhere")
            if key_type is UrlPrefix:
                plan.rules.append(PrefixRule(list(keys), source))
            else:
                plan.rules.append(ExactKeyRule(key_type, KeySet(keys), _REASONS.get(
                    type_name, Reason.URL_HASH if issubclass(key_type, UrlDigestType)
                    else Reason.CONTENT_HASH), source))
    return plan


#: Column roles of perceptual hashes: exact matching would silently miss near-duplicates.
PERCEPTUAL_TARGETS = frozenset({"pdq", "phash", "dhash"})
_REASONS = {"url": Reason.OPTOUT_URL, "host": Reason.OPTOUT_HOST, "domain": Reason.OPTOUT_DOMAIN}


def _unique_labels(labels: list[str]) -> list[str]:
    """Disambiguate repeated labels (two files called ``list.txt``) with ``#2``, ``#3``..."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out
