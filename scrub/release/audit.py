"""The audit of one release variant (``V.scrub/audit.json``): what an auditor asks first (which
scrub, which policy and its rules in words, which list versions, which ledger position and
requests, who signed), the totals, how reasons combine, the removals per shard, the time taken
and the comparison with a previous release. Counts and digests only: a sensitive list is never
named entry by entry, a request never by its requester.

A field the build could not know (a release built by an older scrub, a shard reused from a
release that did not count it) is None and explained under ``missing``, never guessed.
:func:`from_signed` completes an audit from its variant's signed manifest, so ``scrub release
report`` renders an older release with what it has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scrub import __version__
from scrub.engine.entries import entry_totals, unmatched_values
from scrub.errors import UserInputError
from scrub.release.signed import AUDIT_JSON, Location, find_variants
from scrub.release.stats import VariantShardStats

if TYPE_CHECKING:
    from scrub.release.plan import ReleasePlan, Variant

#: The audit format this version writes.
AUDIT_FORMAT = "scrub-audit/2"
#: How many unmatched entries of a public list the audit names (the rest are counted).
NAMED_UNMATCHED = 100
#: Every field of an audit of this format, in the order a reader meets them.
FIELDS = ("format", "scrub_version", "release_id", "variant", "dataset", "created_at",
          "duration_seconds", "signed_by", "policy", "lists", "ledger",
          "rows_in", "rows_out", "removed", "removed_by_reason", "rows_with_several_reasons",
          "reason_combinations", "removed_by_source", "sensitive_sources", "per_shard",
          "previous")
_OLDER = "not recorded by the scrub that built this release"
#: Why no signed audit holds the build's duration.
UNTIMED = ("not in the signed audit: a release is reproducible byte for byte, so it holds no "
           "clock reading; scrub release build prints the time taken (duration_seconds in its "
           "--json summary)")


def variant_audit(release: ReleasePlan, variant: Variant, rows: Sequence[VariantShardStats], *,
                  release_id: str, created_at: str, dataset: str, signed_by: str,
                  previous: Location | None = None, only: bool = True) -> dict[str, Any]:
    """The audit of ``variant`` built from its shards' stats ``rows``; ``previous``: a release
    to compare with (see :func:`compare_with`). The same build gives the same bytes (resumed
    or not): the time taken is said to be missing (:data:`UNTIMED`)."""
    by_reason: dict[str, int] = {}
    by_source: dict[str, int] = {}
    combos: dict[str, int] | None = {}
    for shard in rows:
        _add(by_reason, shard.by_reason)
        _add(by_source, shard.by_source)
        combos = _add(combos, shard.by_combination) if combos is not None else None
    missing: dict[str, str] = {"duration_seconds": UNTIMED}
    if combos is None:
        missing["reason_combinations"] = "some shards were reused from a release built before " \
            "reasons' combinations were counted"
    rows_in, rows_out = sum(r.rows_in for r in rows), sum(r.rows_out for r in rows)
    sources = [s for s in release.plan.sources if s.id in variant.sources]
    audit: dict[str, Any] = {
        "format": AUDIT_FORMAT, "scrub_version": __version__, "release_id": release_id,
        "variant": variant.policy.name, "dataset": dataset, "created_at": created_at,
        "duration_seconds": None,
        "signed_by": signed_by,
        "policy": {**variant.policy.describe(), "description": variant.policy.description,
                   "rules": policy_rules(variant.policy.describe())},
        "lists": _lists(release, variant, rows, by_source, missing),
        "ledger": _ledger(release, variant, sources),
        "rows_in": rows_in, "rows_out": rows_out, "removed": rows_in - rows_out,
        "removed_by_reason": dict(sorted(by_reason.items())),
        "rows_with_several_reasons": sum(r.several_reasons for r in rows),
        "reason_combinations": dict(sorted(combos.items())) if combos is not None else None,
        "removed_by_source": dict(sorted(by_source.items())),
        "sensitive_sources": sorted({s.label if s.kind != "request" else "ledger requests"
                                     for s in sources if s.sensitive}),
        "per_shard": [per_shard(r.shard, r.rows_in, r.rows_out) for r in rows],
        "previous": None,
    }
    if previous is not None:
        found = compare_with(previous, variant.policy.name, audit, only=only)
        if "missing" in found:
            missing["previous"] = str(found["missing"])
        else:
            audit["previous"] = found
    audit["missing"] = dict(sorted(missing.items()))
    return audit


def _add(into: dict[str, int], counts: Mapping[str, int] | None) -> dict[str, int] | None:
    """``counts`` added to ``into`` (None when ``counts`` was not counted)."""
    if counts is None:
        return None
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value
    return into


def _lists(release: ReleasePlan, variant: Variant, rows: Sequence[VariantShardStats],
           by_source: Mapping[str, int], missing: dict[str, str]) -> list[dict[str, Any]]:
    """Every list version the variant applies, with its entries and those that matched
    nothing (unknown where a shard reused from an earlier release did not record them)."""
    plan = release.plan
    totals = entry_totals(plan)
    counted = all(r.matched_entries is not None and not r.reused for r in rows)
    if not counted:
        missing["lists.unmatched_entries"] = "some shards were reused from an earlier release " \
            "without matching every entry again"
    out = []
    for entry in release.lists:
        source = next((s for s in plan.sources if s.id in variant.sources
                       and s.kind == "hashlist" and s.digest == entry["sha256"]), None)
        if source is None:
            continue
        unmatched, named = None, None
        if counted and source.id in totals:
            matched = {source.label: {i for r in rows
                                      for i in (r.matched_entries or {}).get(source.label, [])}}
            unmatched = totals[source.id] - len(matched[source.label])
            if not source.sensitive and unmatched:
                named = unmatched_values(plan, matched, [source.label]).get(source.label)
        out.append(list_entry(entry, removed=by_source.get(source.label, 0),
                              entries=totals.get(source.id), unmatched=unmatched,
                              named=named, sensitive=source.sensitive))
    return out


def _ledger(release: ReleasePlan, variant: Variant,
            sources: Sequence[Any]) -> dict[str, Any] | None:
    """The ledger watermark the variant was built at and its enforced requests (id and
    kind, never who asked)."""
    if not (variant.policy.ledger and release.watermark):
        return None
    kinds = {int(dict(s.details)["request"]): str(dict(s.details).get("kind"))
             for s in sources if s.kind == "request"}
    return {"events": release.watermark[0], "head": release.watermark[1],
            "requests": [{"id": r, "kind": kinds.get(r)} for r in release.requests]}


def policy_rules(policy: Mapping[str, Any]) -> list[str]:
    """The policy's rules in words, from its description in the manifest."""
    rules = []
    lists = list(policy.get("lists") or [])
    if lists:
        rules.append("Remove every row matching an entry of the list versions below ("
                     + ("every block list of the store" if "*" in lists
                        else ", ".join(str(name) for name in lists)) + ").")
    if policy.get("ledger"):
        rules.append("Remove every row matching an item of a verified takedown request of the "
                     "ledger (the requests below).")
    score = ("the dataset's stored punsafe score" if policy.get("score") == "stored"
             else "the punsafe score rescored by scrub nsfw rescore")
    keywords = policy.get("keywords", 0)
    for rule in policy.get("thresholds") or []:
        words = f"Remove a row when {score} is above {float(rule['above']):g}"
        if rule.get("keywords"):
            words += (f" and its caption holds one of the policy's {keywords} keyword "
                      "term(s) (whole words, case-insensitive)")
        rules.append(words + ".")
    return rules or ["This policy removes nothing."]


def list_entry(entry: Mapping[str, Any], *, removed: int, entries: int | None,
               unmatched: int | None, named: Sequence[str] | None,
               sensitive: bool | None) -> dict[str, Any]:
    """One list version as the audit shows it: name, version, sha256, entries, rows removed,
    entries that matched nothing (``named`` only for a public list, at most
    :data:`NAMED_UNMATCHED`)."""
    label = str(entry.get("label", entry.get("name", "")))
    version = label.split("@", 1)[1] if "@" in label else None
    shown = list(named or [])[:NAMED_UNMATCHED] if sensitive is False else []
    return {"name": entry.get("name"), "version": version, "label": label,
            "sha256": entry.get("sha256"), "sensitive": sensitive, "entries": entries,
            "rows_removed": removed, "unmatched_entries": unmatched,
            "unmatched_named": shown,
            "unmatched_not_named": (unmatched - len(shown)) if unmatched is not None else None}


def per_shard(shard: str, rows_in: int, rows_out: int) -> dict[str, Any]:
    """One shard's row counts: nothing more per shard (reasons per shard could tie the rows
    a shard lost, which anyone holding the input can tell, to why they went)."""
    return {"shard": shard, "rows_in": rows_in, "rows_out": rows_out,
            "removed": rows_in - rows_out}


def compare_with(previous: Location, variant: str, audit: Mapping[str, Any], *,
                 only: bool) -> dict[str, Any]:
    """Totals and reasons against the variant of the same name in ``previous`` (a release
    folder, a variant folder or companion, or an audit.json); ``only``: the build has one
    variant, which a single previous variant of another name stands for. ``{"missing": why}``
    when ``previous`` has no such variant."""
    path: Location | None = None
    if previous.is_file() or previous.name == AUDIT_JSON:
        path = previous
    else:
        found = find_variants(previous)
        chosen = [f for f in found if f.name == variant] or (found if only and len(found) == 1
                                                               else [])
        if not found:
            raise UserInputError(f"--previous {previous}: not a release (no {AUDIT_JSON})")
        if not chosen:
            return {"missing": f"the previous release {previous} has no variant {variant!r}"}
        path = chosen[0].meta / AUDIT_JSON
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserInputError(f"--previous {previous}: no readable {AUDIT_JSON}") from None
    if not is_audit(old):
        raise UserInputError(f"--previous {previous}: {AUDIT_JSON} is not an audit (counts "
                             "must be whole numbers, reasons a table of them)")
    return comparison(old, audit)


def is_audit(old: object) -> bool:
    """Whether ``old`` (an unsigned previous audit) has the shape :func:`comparison` reads:
    whole-number totals (or none) and reasons mapped to whole numbers, a text release id."""
    if not isinstance(old, dict):
        return False
    reasons = old.get("removed_by_reason") or {}
    whole = [old.get(k) for k in ("rows_in", "rows_out", "removed", "rows_with_several_reasons")]
    return (isinstance(reasons, dict)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in reasons.values())
            and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in whole)
            and all(isinstance(old.get(k), str | None) for k in ("release_id", "variant")))


def comparison(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A previous audit's totals and reasons beside this one's."""
    old_reasons = old.get("removed_by_reason") or {}
    reasons = sorted(set(old_reasons) | set(new["removed_by_reason"]))
    totals = {key: {"before": old.get(key), "now": new.get(key)}
              for key in ("rows_in", "rows_out", "removed", "rows_with_several_reasons")}
    return {"release_id": old.get("release_id"), "variant": old.get("variant"),
            "rows_in": old.get("rows_in"), "rows_out": old.get("rows_out"),
            "removed": old.get("removed"), "totals": totals,
            "removed_by_reason": {r: old_reasons.get(r, 0) for r in reasons}}


def from_signed(manifest: Mapping[str, Any], audit: Mapping[str, Any]) -> dict[str, Any]:
    """The audit as ``scrub release report`` renders it: ``audit`` (authenticated by the
    signed ``manifest``) with what an older build left out taken from the manifest, and what
    neither holds said to be missing. An audit of this format comes back unchanged."""
    if audit.get("format") == AUDIT_FORMAT:
        return dict(audit)
    out: dict[str, Any] = {key: audit.get(key) for key in FIELDS}
    missing: dict[str, str] = dict(audit.get("missing") or {})
    out["format"] = AUDIT_FORMAT
    for key in ("scrub_version", "release_id", "variant", "dataset", "created_at"):
        if out[key] is None:
            out[key] = manifest.get(key)
    out["signed_by"] = manifest.get("signed_by")
    policy = manifest.get("policy")
    out["policy"] = ({**policy, "rules": policy_rules(policy)} if isinstance(policy, dict)
                     else None)
    by_source = audit.get("removed_by_source") or {}
    out["lists"] = [list_entry(e, removed=int(by_source.get(e.get("label"), 0)), entries=None,
                               unmatched=None, named=None, sensitive=None)
                    for e in manifest.get("lists") or []]
    ledger = manifest.get("ledger")
    out["ledger"] = ({"events": ledger.get("events"), "head": ledger.get("head"),
                      "requests": [{"id": int(r), "kind": None}
                                   for r in ledger.get("requests", [])]}
                     if isinstance(ledger, dict) else None)
    out["removed_by_source"] = dict(by_source)
    out["sensitive_sources"] = list(audit.get("sensitive_sources") or [])
    out["per_shard"] = [per_shard(str(s["shard"]), int(s["rows_in"]), int(s["rows_out"]))
                        for s in audit.get("per_shard") or []]
    missing.setdefault("duration_seconds", UNTIMED)
    if out["reason_combinations"] is None:
        missing.setdefault("reason_combinations", _OLDER)
    if out["rows_with_several_reasons"] is None:
        missing["rows_with_several_reasons"] = _OLDER
    missing.setdefault("lists.entries", _OLDER)
    missing.setdefault("lists.unmatched_entries", _OLDER)
    if out["ledger"] is not None:
        missing.setdefault("ledger.requests.kind", _OLDER)
    out["missing"] = dict(sorted(missing.items()))
    return out


__all__ = ["AUDIT_FORMAT", "FIELDS", "compare_with", "comparison", "from_signed", "is_audit",
           "list_entry", "per_shard", "policy_rules", "variant_audit"]
