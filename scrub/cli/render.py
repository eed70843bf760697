"""Human-readable renderings of reports for the terminal. Counts only."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports the apply job only when a command runs
    from scrub.apply.report import ApplyReport


def _n(value: int) -> str:
    return f"{int(value):,}"


def render_apply_summary(report: ApplyReport, path: object) -> str:
    """A short summary of an apply report."""
    lines = [
        f"rows in:      {_n(report['rows_in'])} in {report['shards']} shard(s)",
        f"rows removed: {_n(report['rows_removed'])}",
    ]
    for reason, count in report["removed_by_reason"].items():
        lines.append(f"  by reason {reason}: {_n(count)}")
    several = int(report.get("rows_with_several_reasons", 0))
    if several:
        lines.append(f"  rows removed for several reasons (counted under each): {_n(several)}")
    for label, count in report["removed_by_list"].items():
        lines.append(f"  by list {label}: {_n(count)}")
    unmatchable = {k: v for k, v in report["unmatchable"].items() if v}
    for column, count in unmatchable.items():
        # not indented under the removals: these rows were kept without being checked
        lines.append(f"WARNING: {_n(count)} row(s) kept UNCHECKED: their {column} is null or "
                     f"malformed, so no list matching {column} could remove them")
    for label, count in report.get("unmatched_entries", {}).items():
        if count:
            lines.append(f"  entries of list {label} that matched no row: {_n(count)}")
    lines.append(f"rows out:     {_n(report['rows_out'])}")
    lines.append(f"output:       {report['output']}")
    lines.append(f"report:       {path}")
    return "\n".join(lines)
