"""Planning a release: one match plan holding the rules of every policy (lists, ledger
requests, NSFW thresholds), each under a source, and per policy the variant that uses a set of
those sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scrub.engine.attribution import AttributedRule
from scrub.engine.plan import MatchOptions, MatchPlan, add_ledger_rules, plan_for_apply
from scrub.engine.reasons import Reason
from scrub.engine.rules import AllOf, CaptionTermRule, Rule, ScoreRule, Source
from scrub.engine.scores import RESCORED
from scrub.errors import UserInputError
from scrub.lists.store import ListStore, ListVersion
from scrub.release.ledger import Item, ItemSeal, ReleaseLedger
from scrub.release.policy import Policy


@dataclass
class Variant:
    """A policy's variant: the plan's sources it applies."""

    policy: Policy
    sources: frozenset[int]


@dataclass
class ReleasePlan:
    """The plan of every variant, the list versions it applies (name, label, sha256), the
    ledger watermark and the requests it applies (when a policy takes ledger requests)."""

    plan: MatchPlan
    variants: list[Variant]
    lists: list[dict[str, str]]
    watermark: tuple[int, str] | None = None
    requests: list[int] = field(default_factory=list)

    @property
    def groups(self) -> list[frozenset[int]]:
        """Each variant's sources, in variant order (the kernel's ``groups``)."""
        return [v.sources for v in self.variants]

    @property
    def names(self) -> list[str]:
        return [v.policy.name for v in self.variants]


def plan_release(policies: Sequence[Policy], *, store: ListStore | None, key: bytes | None,
                 ledger: ReleaseLedger | None = None, scores: Path | None = None,
                 options: MatchOptions | None = None) -> ReleasePlan:
    """One plan for every policy, and each policy's sources in it."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise UserInputError(f"two policies are named {twice!r} (each names a variant)")
    if any(p.lists for p in policies):
        store = store or ListStore()
    refs = _list_refs(policies, store)
    plan = plan_for_apply([], sorted(refs), store=store, key=key, options=options)
    by_list = {s.id: s for s in plan.sources if s.kind == "hashlist"}
    label_policies: dict[int, set[str]] = {}
    for source in by_list.values():
        for ref, users in refs.items():
            if ref.split("@", 1)[0] == source.name:
                label_policies.setdefault(source.id, set()).update(users)
    release = ReleasePlan(plan=plan, variants=[], lists=[
        {"name": s.name, "label": s.label, "sha256": s.digest} for s in by_list.values()])
    request_ids: set[int] = set()
    if any(p.ledger for p in policies):
        request_ids = _add_requests(release, ledger, options)
    if scores is not None:
        plan.scores[RESCORED] = str(Path(scores).resolve())
    score_sources = _add_thresholds(plan, policies, scores)
    for policy in policies:
        members = {sid for sid, users in label_policies.items() if policy.name in users}
        if policy.ledger:
            members |= request_ids
        members |= {score_sources[(policy.score, t.above, t.keywords)]
                    for t in policy.thresholds}
        release.variants.append(Variant(policy, frozenset(members)))
    return release


def _list_refs(policies: Sequence[Policy], store: ListStore | None) -> dict[str, set[str]]:
    """``name@version`` of every list version some policy applies -> those policies (``store``
    is None when none applies lists)."""
    refs: dict[str, set[str]] = {}
    if store is None or not any(p.lists for p in policies):  # a store no policy uses: unread
        return refs
    catalog = store.catalog()
    for policy in policies:
        for ref in policy.lists:
            chosen = ([versions[-1] for versions in catalog.values()
                       if versions[-1].kind == "block"] if ref == "*"
                      else [_resolve(store, ref, policy)])
            for meta in chosen:
                refs.setdefault(f"{meta.name}@{meta.version}", set()).add(policy.name)
    return refs


def _add_requests(release: ReleasePlan, ledger: ReleaseLedger | None,
                  options: MatchOptions | None) -> set[int]:
    """Add the ledger's enforced requests to the plan; the ids of their sources."""
    if ledger is None:
        raise UserInputError("a policy applies ledger requests: give the ledger (--db, or "
                             "the default $SCRUB_HOME/ledger.db)")
    plan = release.plan
    before, first_rule = len(plan.sources), len(plan.rules)
    items = list(ledger.enforced_items())
    release.watermark = ledger.watermark()
    add_ledger_rules(plan, items, watermark=release.watermark, options=options)
    _label_items(plan.rules[first_rule:], items, ledger.seal)
    release.requests = sorted({item[0] for item in items})
    return set(range(before, len(plan.sources)))


def _add_thresholds(plan: MatchPlan, policies: Sequence[Policy],
                    scores: Path | None) -> dict[tuple[str, float, bool], int]:
    """A source and a rule per distinct NSFW threshold of the policies; spec -> source id."""
    score_sources: dict[tuple[str, float, bool], int] = {}
    for policy in policies:
        if policy.score == "rescored" and scores is None:
            raise UserInputError(f"{policy.path}: nsfw.score is \"rescored\": give --scores DIR "
                                 "(from `scrub nsfw rescore`)")
        for threshold in policy.thresholds:
            spec = (policy.score, threshold.above, threshold.keywords)
            if spec in score_sources:
                continue
            role = RESCORED if policy.score == "rescored" else "punsafe"
            label = f"punsafe > {threshold.above}" + (" with a flagged caption"
                                                      if threshold.keywords else "")
            source = Source(id=len(plan.sources), label=f"{label} ({policy.score})",
                            kind="policy", digest="", sensitive=False, name=label)
            plan.sources.append(source)
            rule: Rule = ScoreRule(role, threshold.above, Reason.NSFW, source)
            if threshold.keywords:
                terms = CaptionTermRule(policy.keywords, Reason.NSFW, source)
                rule = AllOf([rule, terms], Reason.NSFW, source)
            plan.rules.append(rule)
            score_sources[spec] = source.id
    return score_sources


def _label_items(rules: Sequence[Rule], items: Sequence[Item], seal: ItemSeal | None) -> None:
    """Label each ledger rule's values "REQUEST:DIGEST" (the ledger's keyed item digest), so
    a build counts per request item the rows each variant removed (never a value). The labels
    follow :func:`add_ledger_rules`, which gives each item type's rule its values in the
    items' order."""
    if seal is None:
        return
    labels: dict[str, list[str]] = {}
    for request_id, _, type_name, value in items:
        labels.setdefault(type_name, []).append(
            f"{request_id}:{seal.item_digest(type_name, value)}")
    for rule in rules:
        if isinstance(rule, AttributedRule):
            rule.item_keys = labels.get(rule.type_name)


def _resolve(store: ListStore, ref: str, policy: Policy) -> ListVersion:
    try:
        return store.resolve(ref)
    except UserInputError as exc:
        raise UserInputError(f"{policy.path}: lists.names: {exc.message}", hint=exc.hint) \
            from None
