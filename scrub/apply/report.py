"""The apply report: counts and digests only, never a value from a list or a row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from scrub import __version__
from scrub.engine.entries import entry_totals
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats, Totals
from scrub.storage import ObjectPath

#: The report's file name, in OUTPUT's companion folder.
REPORT_NAME = "apply-report.json"


class ShardSummary(TypedDict):
    """One shard's line of the report."""

    shard: str
    rows_in: int
    rows_out: int
    removed_by_reason: dict[str, int]


class ApplyReport(TypedDict):
    """The apply report as written to JSON (see :func:`build_report`)."""

    scrub_version: str
    job: str
    input: str
    output: str
    shards: int
    rows_in: int
    rows_out: int
    rows_removed: int
    removed_by_reason: dict[str, int]
    rows_with_several_reasons: int
    removed_by_list: dict[str, int]
    suppressed_by_allowlist: dict[str, int]
    unmatched_entries: dict[str, int]
    unmatchable: dict[str, int]
    decision_records: dict[str, int]
    lists: list[dict[str, object]]
    per_shard: list[ShardSummary]


def build_report(plan: MatchPlan, source: Path | ObjectPath, output: Path | ObjectPath,
                 shard_stats: Sequence[ShardStats]) -> ApplyReport:
    """The apply report: totals, per reason, per list, per shard. Counts and digests only.

    A row removed for several reasons counts under each in ``removed_by_reason``;
    ``rows_with_several_reasons`` says how many such rows there are.

    ``unmatched_entries`` counts, per list (allow-lists included), the entries that matched
    no row of the whole dataset."""
    totals = Totals.of(shard_stats)
    labels = {s.id: s.label for s in plan.sources}
    unmatched: dict[str, int] = {}
    for source_id, count in entry_totals(plan).items():
        label = labels[source_id]
        unmatched[label] = count - len(totals.matched_entries.get(label, ()))
    return {
        "scrub_version": __version__,
        "job": "apply",
        "input": str(source.resolve()),
        "output": str(output.resolve()),
        "shards": totals.shards,
        "rows_in": totals.rows_in,
        "rows_out": totals.rows_out,
        "rows_removed": totals.removed,
        "removed_by_reason": dict(sorted(totals.removed_by_reason.items())),
        "rows_with_several_reasons": totals.rows_with_several_reasons,
        "removed_by_list": {s.label: totals.removed_by_source.get(s.label, 0)
                            for s in plan.sources if s.kind != "allowlist"},
        "suppressed_by_allowlist": dict(sorted(totals.suppressed_by_source.items())),
        "unmatched_entries": dict(sorted(unmatched.items())),
        "unmatchable": dict(sorted(totals.unmatchable.items())),
        "decision_records": dict(sorted(Counter(st.decisions for st in shard_stats).items())),
        "lists": [{"label": src.label, "kind": src.kind, **dict(src.details)}
                  for src in plan.sources],
        "per_shard": [{"shard": st.shard, "rows_in": st.rows_in, "rows_out": st.rows_out,
                       "removed_by_reason": st.removed_by_reason}
                      for st in shard_stats],
    }
