"""``scrub apply``: run a match plan over a dataset into an output folder, resumably.

OUTPUT gets one shard per input shard (same name, schema and row order, minus matched rows) and
nothing else, so every parquet reader reads it as exactly its rows; the report
(``apply-report.json``, counts only), the job state and the decision records lie in its
companion folder ``OUTPUT.scrub/`` (:mod:`scrub.layout`). Each shard appears atomically; the
report appears once every shard is done. A rerun of the same job continues from completed
shards (:mod:`scrub.runtime`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrub.apply import task
from scrub.apply.report import REPORT_NAME, ApplyReport, build_report
from scrub.atomic import atomic_write_json
from scrub.dataset import Shard, discover_shards
from scrub.engine.decisions import write_sources
from scrub.engine.entries import unmatched_values
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats, Totals, input_identity
from scrub.engine.survey import survey
from scrub.engine.warmup import announcing_to
from scrub.errors import ShardsFailedError, UserInputError
from scrub.layout import companion
from scrub.progress import Progress
from scrub.runtime import (
    JobState,
    Outcome,
    default_workers,
    has_size,
    job_identity,
    open_executor,
    run_units,
    split_done,
)
from scrub.storage import ObjectPath, location


@dataclass
class ApplyResult:
    """The report written to ``OUTPUT.scrub/apply-report.json`` and where it lies."""

    report: ApplyReport
    path: Path | ObjectPath
    #: Public lists only: the entries that matched no row, as text (hex for hashes and for
    #: the SHA-256 digests the store keeps of URLs, hosts and domains). Shown with ``--json``,
    #: never written to the report file.
    unmatched_values: dict[str, list[str]] = field(default_factory=dict)


def apply(plan: MatchPlan | Callable[[], MatchPlan], source: Path | ObjectPath | str,
          output: Path | ObjectPath | str, *,
          workers: int | None = None, force: bool = False,
          column_overrides: Mapping[str, str] | None = None,
          progress: bool = True, key: bytes | None = None, engine: str = "local",
          address: str | None = None) -> ApplyResult:
    """Scrub ``source`` into ``output`` with ``plan``.

    ``plan`` may be a function building it (parsing lists): workers start while it runs, and
    nothing is written before it is built, so a bad list leaves ``output`` untouched. ``key``
    encrypts the decision records of shards where a sensitive source removed rows; without it
    they are withheld (counted in the report), never written in clear. ``engine="ray"`` runs
    the shards on a Ray cluster (``address``, or a local one): same bytes, same resume.
    ``source`` and ``output`` may lie in object storage (``s3://bucket/prefix``), either or both.

    Raises :class:`ShardsFailedError` when some shards failed (the others are kept),
    :class:`~scrub.errors.OutputConflictError` when ``output`` belongs to something else, and
    :class:`~scrub.errors.Interrupted` on Ctrl-C.
    """
    source, output = location(source), location(output)
    shards = discover_shards(source)
    folder = (source if source.is_dir() else source.parent).resolve()
    if folder in (output.resolve(), companion(output).resolve()):
        raise UserInputError(f"{output}: OUTPUT must differ from the input folder",
                             hint="scrub never rewrites its input in place")
    count = workers if engine == "ray" else min(workers or default_workers(), len(shards))
    with open_executor(engine, workers=count, address=address, warm=task.warm,
                       prepare=task.prepare) as executor:
        if isinstance(output, ObjectPath) and output.scheme == "s3":
            executor.hint({"s3"})  # workers build their S3 client while the plan is built,
            _prepare_client()      # and so does this process, beside it
        with announcing_to(executor.hint):
            ready = plan() if callable(plan) else plan
        state = JobState(output, _job_identity(ready, source, column_overrides))
        state.prepare(force=force, shards=[s.name for s in shards])
        executor.load(task.setup, {"plan": ready, "overrides": column_overrides, "key": key,
                                   "state": state})
        write_sources(state.root, ready)
        done, pending = split_done(shards, lambda shard: _completed(state, shard))
        meter = Progress("apply", len(shards), survey(shards), enabled=progress)
        meter.resume(sum(stats.rows_in for _, stats in done), shards=len(done))
        outcomes = run_units(executor, pending, meter=meter, rows=_rows_in)
    failures = _failures(outcomes)
    if failures:
        raise ShardsFailedError(failures, total=len(shards))
    finished = {shard.name: stats for shard, stats in done}
    finished.update({o.unit.name: ShardStats.from_json(o.result["stats"]) for o in outcomes})
    shard_stats = [finished[s.name] for s in shards]
    return _finish(state, ready, source, output, shard_stats)


def _finish(state: JobState, plan: MatchPlan, source: Path | ObjectPath,
            output: Path | ObjectPath,
            shard_stats: list[ShardStats]) -> ApplyResult:
    """Write the report, end the job (its staging folder goes), gather unmatched entries."""
    report = build_report(plan, source, output, shard_stats)
    path = state.root / REPORT_NAME
    atomic_write_json(path, report)
    state.finish()
    if state.replaced_legacy:  # an older scrub's report, inside OUTPUT: it is no shard
        (output / REPORT_NAME).unlink(missing_ok=True)
    public = [s.label for s in plan.sources if not s.sensitive and s.kind == "hashlist"]
    values = unmatched_values(plan, Totals.of(shard_stats).matched_entries, public)
    return ApplyResult(report=report, path=path, unmatched_values=values)


def _prepare_client() -> None:
    """Build this process's S3 client in a thread (import and set-up cost ~0.2 s)."""
    import contextlib
    import threading

    from scrub.errors import ScrubError
    from scrub.storage.writes import client

    def build() -> None:
        with contextlib.suppress(ScrubError):  # told when used (boto3 not installed)
            client()

    threading.Thread(target=build, name="scrub-s3-client", daemon=True).start()


def _failures(outcomes: list[Outcome[Shard]]) -> list[tuple[str, str]]:
    """(shard path, why) of every shard that failed."""
    failures: list[tuple[str, str]] = []
    for outcome in outcomes:
        error = _error(outcome)
        if error:
            failures.append((outcome.unit.path.as_posix(), error))
    return failures


def _error(outcome: Outcome[Shard]) -> str | None:
    """Why a shard failed: the task's reason, or the runtime's (a worker died)."""
    if outcome.error is not None:
        return outcome.error
    return outcome.result["error"] if outcome.result else None


def _rows_in(outcome: Outcome[Shard]) -> int:
    stats = outcome.result["stats"] if outcome.result else None
    return int(stats["rows_in"]) if stats else 0


def _completed(state: JobState, shard: Shard) -> ShardStats | None:
    """The stats of a shard this job completed from the current input, else None."""
    def current(marker: dict[str, Any]) -> bool:
        stats = _stats(marker)
        out = state.output / shard.name
        if (stats.input_size, stats.input_mtime_ns) != input_identity(shard):
            return False
        if not has_size(out, stats.output_size):
            return False
        # a webdataset shard: its tar must be there too
        if stats.tar_output_size and not has_size(out.with_suffix(".tar"),
                                                  stats.tar_output_size):
            return False
        return marker.get(task.INPUT_TAG) == task.input_tag(shard, task.tar_of(shard))

    marker = state.completed(shard.name, current)
    return _stats(marker) if marker is not None else None


def _stats(marker: dict[str, Any]) -> ShardStats:
    """A completion marker's stats (without the input's ETags, see :func:`task.input_tag`)."""
    return ShardStats.from_json({k: v for k, v in marker.items() if k != task.INPUT_TAG})


def _job_identity(plan: MatchPlan, source: Path | ObjectPath,
                  column_overrides: Mapping[str, str] | None) -> dict[str, object]:
    return job_identity("apply", {"input": str(source.resolve()), "plan": plan.fingerprint(),
                                  "columns": dict(sorted((column_overrides or {}).items()))})
