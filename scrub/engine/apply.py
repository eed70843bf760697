"""``scrub apply``: run a match plan over a dataset into an output folder, resumably.

OUTPUT gets one shard per input shard (same name, schema and row order, minus matched rows) and
nothing else, so every parquet reader reads it as exactly its rows; the report
(``apply-report.json``, counts only), the job state and the decision records lie in its
companion folder ``OUTPUT.scrub/`` (:mod:`scrub.layout`). Each shard appears atomically; the
report appears once every shard is done. A rerun of the same job continues from completed
shards.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from scrub import __version__
from scrub.atomic import atomic_write_json
from scrub.dataset import Shard, discover_shards, open_shard
from scrub.engine.checkpoint import JobState
from scrub.engine.decisions import write_sources
from scrub.engine.entries import entry_totals, unmatched_values
from scrub.engine.local import LocalExecutor, ShardOutcome, default_workers
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats, Totals
from scrub.engine.warmup import announcing_to
from scrub.errors import InvalidDatasetError, ScrubError, ShardsFailedError, UserInputError
from scrub.layout import companion
from scrub.progress import Progress

REPORT_NAME = "apply-report.json"


@dataclass
class ApplyResult:
    """The report written to ``OUTPUT.scrub/apply-report.json`` and where it lies."""

    report: dict[str, object]
    path: Path
    #: Public lists only: the entries that matched no row, as text (hex for hashes and for
    #: the SHA-256 digests the store keeps of URLs, hosts and domains). Shown with ``--json``,
    #: never written to the report file.
    unmatched_values: dict[str, list[str]] = field(default_factory=dict)


def apply(plan: MatchPlan | Callable[[], MatchPlan], source: Path | str, output: Path | str, *,
          workers: int | None = None, force: bool = False,
          column_overrides: Mapping[str, str] | None = None,
          progress: bool = True, key: bytes | None = None, engine: str = "local",
          address: str | None = None) -> ApplyResult:
    """Scrub ``source`` into ``output`` with ``plan``.

    ``plan`` may be a function that builds it (parsing lists): the workers then start while it
    runs. Nothing is written before the plan is built, so a bad list leaves ``output`` untouched.

    ``key`` encrypts the decision records of shards where a sensitive source removed rows;
    without it those records are withheld (counted in the report), never written in clear.

    ``engine="ray"`` runs the shards on a Ray cluster (``address``, or a local one) instead of
    local processes: same output bytes, same resume (:mod:`scrub.engine.distributed`).

    Raises :class:`ShardsFailedError` when some shards failed (the others are kept),
    :class:`~scrub.errors.OutputConflictError` when ``output`` belongs to something else, and
    :class:`~scrub.errors.Interrupted` on Ctrl-C.
    """
    source, output = Path(source), Path(output)
    shards = discover_shards(source)
    folder = (source if source.is_dir() else source.parent).resolve()
    if folder in (output.resolve(), companion(output).resolve()):
        raise UserInputError(f"{output}: OUTPUT must differ from the input folder",
                             hint="scrub never rewrites its input in place")
    if engine == "ray":
        from scrub.engine.distributed import RayExecutor

        executor: LocalExecutor | RayExecutor = RayExecutor(address, workers)
    else:
        executor = LocalExecutor(min(workers or default_workers(), len(shards)))
    with executor:
        with announcing_to(executor.warm):
            ready = plan() if callable(plan) else plan
        executor.load(ready, column_overrides, key)
        state = JobState(output, _job_identity(ready, source, column_overrides))
        state.prepare(force=force, shards=[s.name for s in shards])
        write_sources(state.root, ready)
        done = {s.name: st for s in shards if (st := state.completed(s)) is not None}
        pending = [s for s in shards if s.name not in done]
        meter = Progress("apply", len(shards), survey(shards), enabled=progress)
        meter.resume(sum(st.rows_in for st in done.values()), shards=len(done))

        def on_done(outcome: ShardOutcome) -> None:
            meter.advance(outcome.stats.rows_in if outcome.stats else 0)

        try:
            outcomes = executor.run(state, pending, on_done=on_done)
        finally:
            meter.finish()
    failures = [(o.shard.path.as_posix(), o.error or "") for o in outcomes if o.error]
    if failures:
        raise ShardsFailedError(failures, total=len(shards))
    done.update({o.shard.name: o.stats for o in outcomes if o.stats})
    shard_stats = [done[s.name] for s in shards]
    report = build_report(ready, source, output, shard_stats)
    path = state.root / REPORT_NAME
    atomic_write_json(path, report)
    state.finish()
    if state.replaced_legacy:  # an older scrub's report, inside OUTPUT: it is no shard
        (output / REPORT_NAME).unlink(missing_ok=True)
    public = [s.label for s in ready.sources if not s.sensitive and s.kind == "hashlist"]
    values = unmatched_values(ready, Totals.of(shard_stats).matched_entries, public)
    return ApplyResult(report=report, path=path, unmatched_values=values)


def _job_identity(plan: MatchPlan, source: Path,
                  column_overrides: Mapping[str, str] | None) -> dict[str, object]:
    body = json.dumps({"input": str(source.resolve()), "plan": plan.fingerprint(),
                       "columns": dict(sorted((column_overrides or {}).items()))},
                      sort_keys=True)
    return {"job": "apply", "fingerprint": hashlib.sha256(body.encode()).hexdigest()}


def survey(shards: Sequence[Shard]) -> int:
    """Total rows of the readable shards, after checking that their schemas agree.

    A shard whose columns differ from the first readable one (missing, extra, or of another type)
    is an error naming both shards and the column. Unreadable shards are left to the workers,
    which report them by name while the others complete.
    """
    total = 0
    reference: tuple[Shard, pa.Schema] | None = None
    for shard in shards:
        try:
            metadata = open_shard(shard).metadata
        except ScrubError:
            continue
        total += metadata.num_rows
        schema = metadata.schema.to_arrow_schema()
        if reference is None:
            reference = (shard, schema)
            continue
        first, expected = reference
        problem = _schema_difference(expected, schema)
        if problem:
            raise InvalidDatasetError(
                f"{shard.path}: schema differs from {first.name}: {problem}",
                hint="every shard of a dataset must have the same columns and types")
    return total


def _schema_difference(expected: pa.Schema, actual: pa.Schema) -> str | None:
    for field in expected:
        if field.name not in actual.names:
            return f"column {field.name!r} is missing"
        other = actual.field(field.name)
        if not other.type.equals(field.type):
            return f"column {field.name!r} is {other.type}, not {field.type}"
    for name in actual.names:
        if name not in expected.names:
            return f"column {name!r} is extra"
    return None


def build_report(plan: MatchPlan, source: Path, output: Path,
                 shard_stats: Sequence[ShardStats]) -> dict[str, object]:
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
