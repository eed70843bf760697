"""``scrub release build``: several policy variants of a dataset in one pass over it.

Every shard is read once; the kernel runs each rule once and gives each variant the reason bits
of its own sources, and each variant's writer gets the rows it keeps, in input order, with the
input schema (:mod:`scrub.release.shard`). A variant is published as ``OUT/<name>/`` (its
shards only) and ``OUT/<name>.scrub/`` (embeddings, manifest, signature, audit, removal list).
Work happens under ``OUT/.scrub-release`` (:mod:`scrub.release.staging`), so an interrupted
build resumes with the same bytes; the variants move to ``OUT`` only when all is written
(:mod:`scrub.release.publish`). INPUT and OUT may lie in object storage (``s3://bucket/prefix``),
either or both: an OUT there receives each file as it is built, and each variant's signature
last (a variant without one is not published).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from scrub.dataset import Shard, discover_shards, open_shard
from scrub.engine.survey import survey
from scrub.errors import OutputConflictError, ScrubError, UserInputError
from scrub.layout import companion
from scrub.progress import Progress
from scrub.release import task
from scrub.release.plan import ReleasePlan, Variant, plan_release
from scrub.release.probe import Probing, probe_key, write_inputs
from scrub.release.publish import BuildResult, Published, publish, published_by
from scrub.release.reuse import Reuse, prepare_reuse, settle
from scrub.release.shard import check_embeddings, embedding_file
from scrub.release.signed import locate_variant
from scrub.release.staging import (
    STAGING,
    Job,
    JobIdentity,
    Location,
    Staging,
    job_identity,
)
from scrub.release.stats import VariantShardStats, rows_per_item
from scrub.runtime import (
    Executor,
    Outcome,
    default_workers,
    open_executor,
    run_units,
    split_done,
)
from scrub.storage import MissingBucketError, ObjectPath, location

__all__ = ["STAGING", "BuildResult", "Finish", "ReleasePlan", "Reuse", "Variant", "build",
           "early_workers", "plan_release", "prepare_reuse", "rows_per_item"]

#: Writes manifests and reports where the variants are written (:attr:`Staging.files`) once
#: every shard is built, each signature last.
Finish = Callable[[Location, Job, dict[str, list[VariantShardStats]]], None]


@contextlib.contextmanager
def early_workers(source: Location, output: Location, *, engine: str, workers: int | None,
                  incremental: bool) -> Iterator[Executor | None]:
    """Local workers started now, for :func:`build` (``executor=``) to run the shards on: they
    import and warm up while the caller plans (lists, ledger). None where the build starts its
    own once it knows the shards to build: Ray, an incremental rebuild (it settles shards
    first), a staged build to resume, one shard or one worker, an input :func:`build` refuses."""
    count = 0
    if engine == "local" and not incremental:
        try:
            if not (output / STAGING).exists():
                count = min(workers or default_workers(), len(discover_shards(source)))
        except (ScrubError, OSError):  # build reports it, after the checks that come first
            count = 0
    if count < 2:
        yield None
        return
    with open_executor(engine, workers=count, warm=task.warm) as executor:
        yield executor


def build(source: Location | str, output: Location | str, release: ReleasePlan, *,
          secret: bytes,
          release_id: str | None = None,
          workers: int | None = None, overrides: dict[str, str] | None = None,
          allow_empty: bool = False, progress: bool = True, reuse: Reuse | None = None,
          finish: Finish | None = None, engine: str = "local",
          address: str | None = None, published: Published | None = None,
          executor: Executor | None = None) -> BuildResult:
    """Build every variant's shards (resuming a staged build of the same job), then call
    ``finish(stage, job, stats)`` to write manifests and reports, then publish atomically.

    ``published(result)`` runs once every variant is published and before the staging folder
    goes (the ledger update): a build killed after publishing keeps its staging folder, and a
    rerun publishes what is left and runs ``published`` again, so it must be idempotent. A
    rerun whose inputs or policies differ finishes the interrupted release that way and is
    then refused; one where only the lists or the ledger moved (the ledger update moves it)
    returns the interrupted release.

    ``secret`` (derived from the signing key) keys the removal list's HMAC key to the job: it
    cannot be guessed before publication, and a rebuild of the same job finds the same key.

    ``executor``: workers :func:`early_workers` started (the shards run on them; their owner
    closes them); else the build opens its own for the shards left to build."""
    source, output = location(source), location(output)
    shards = discover_shards(source)
    if _inside(output, source):
        raise UserInputError(f"{output}: OUTPUT must be outside the input folder")
    if isinstance(output, ObjectPath):
        _claim_bucket(output)
    total = survey(shards)
    names = release.names
    identity = job_identity(
        source, shards, plan=release.plan.fingerprint(), overrides=overrides,
        policies={v.policy.name: v.policy.sha256 for v in release.variants},
        previous=reuse.previous if reuse else None)
    staging = Staging(output)
    job = staging.read_job()
    if job is not None and job.fingerprint != identity.fingerprint:  # another build
        interrupted = _finish_interrupted(staging, job, identity, published)
        if interrupted is not None:
            return interrupted
        job = None
    _refuse_conflicts(staging, names, job)
    if isinstance(output, ObjectPath):  # OUT is this build's: a killed run's uploads go
        output.abort_uploads()
    if job is None:
        job = Job.new(identity, release_id=release_id, secret=secret,
                      removal_key=reuse.key if reuse else None, variants=names)
        if staging.remote:  # written in OUT as the build goes: none of another's may stay
            staging.discard_job(None)
        staging.save(job)
    stats = _build_shards(source, shards, release, staging, job, secret=secret,
                          workers=workers, overrides=overrides, progress=progress,
                          reuse=reuse, engine=engine, address=address, total=total,
                          executor=executor)
    by_variant = {name: [stats[s.name][name] for s in shards] for name in names}
    for name, rows in by_variant.items():
        if not allow_empty and total and sum(r.rows_out for r in rows) == 0:
            raise UserInputError(f"policy {name!r} removes every row of the dataset; nothing "
                                 "was published", hint="pass --allow-empty if that is meant")
    if not job.finished:  # a rerun after publication began reuses what it wrote
        write_inputs(staging.files, {name: (size, mtime, by_variant[names[0]][i].input_sha256)
                                    for i, (name, size, mtime)
                                    in enumerate(identity.input_shards)},
                     probe_key(secret))
        if finish is not None:
            finish(staging.files, job, by_variant)
        job.finished = True
        staging.save(job)
    return publish(staging, job, published, names=names, stats=by_variant)


def _finish_interrupted(staging: Staging, job: Job, identity: JobIdentity,
                        published: Published | None) -> BuildResult | None:
    """The staging folder holds another job: finish its publication if it began (returning
    it when only the lists or the ledger moved since, else refusing), or discard it (None)."""
    if job.finished and published_by(staging.output, job):
        finished = publish(staging, job, published)
        if job.inputs == identity.inputs:
            return finished
        raise OutputConflictError(
            f"{staging.output}: holds release {finished.release_id}, published by an "
            "interrupted build that this run has now finished (ledger update included)",
            hint="build into a new OUT folder (releases are never overwritten)")
    staging.discard_job(job)
    return None


def _refuse_conflicts(staging: Staging, names: list[str], job: Job | None) -> None:
    """Refuse to build into variant folders that hold something (releases are never
    overwritten), except those this job's interrupted publication moved there (in object
    storage: those this job writes in, as it found them empty when it started)."""
    for name in names:
        for folder in (staging.output / name, companion(staging.output / name)):
            moved = job is not None and (staging.remote or (
                job.finished and not (staging.root / folder.name).exists()))
            if moved or not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
                continue
            found = locate_variant(folder)
            raise OutputConflictError(
                f"{folder}: holds a release already ("
                f"{json.loads(found.manifest.read_text()).get('release_id', '?')})"
                if found is not None else f"{folder}: exists and is not an empty folder",
                hint="build into a new OUT folder (releases are never overwritten)")


def _build_shards(source: Location, shards: list[Shard], release: ReleasePlan, staging: Staging,
                  job: Job, *, secret: bytes, workers: int | None,
                  overrides: dict[str, str] | None, progress: bool, reuse: Reuse | None,
                  engine: str, address: str | None, total: int,
                  executor: Executor | None) -> dict[str, dict[str, VariantShardStats]]:
    """Every shard built, reused or found built already: shard name -> variant -> stats.

    A shard is a runtime task (:mod:`scrub.release.task`) run by the executor of ``engine``;
    the shards an interrupted build recorded done are skipped."""
    names = release.names
    done, pending = split_done(shards, staging.completed)
    stats = {shard.name: per_variant for shard, per_variant in done}
    meter = Progress("release", len(shards), total, enabled=progress)
    meter.resume(sum(open_shard(s).metadata.num_rows for s, _ in done), shards=len(done))
    key = probe_key(secret)
    if reuse is None:
        _check_embeddings(source, pending)

    def record(shard: Shard, result: list[VariantShardStats]) -> None:
        """A shard reused here: its completion marker, its stats, progress."""
        per_variant = dict(zip(names, result, strict=True))
        staging.mark_done(shard.name, per_variant)
        stats[shard.name] = per_variant
        meter.advance(result[0].rows_in if result else 0)

    handed = False  # once the runtime runs the shards, it finishes the meter
    try:
        task_reuse = reuse
        if reuse is not None:
            pending, task_reuse = _settle(reuse, names, pending, staging, source, overrides,
                                          key, engine=engine, workers=workers, done=record)
        # tail probe sets cost time per row: only for policies that take ledger requests
        probing = Probing(key, tails=any(v.policy.ledger for v in release.variants))
        payload = task.Payload(release.plan, release.groups, names, staging, source,
                               job.removal_key, probing, overrides, task_reuse)
        with (contextlib.nullcontext(executor) if executor is not None
              else _open(engine, workers, address, len(pending))) as running:
            running.load(task.setup, payload)
            handed = True
            outcomes = run_units(running, pending, meter=meter, rows=_rows_in)
    finally:
        if not handed:
            meter.finish()
    for outcome in outcomes:  # the first failed shard's error, as the shard raised it
        if outcome.failed:
            raise outcome.exception()
        stats[outcome.unit.name] = dict(zip(names, task.stats_of(outcome.result), strict=True))
    return stats


def _open(engine: str, workers: int | None, address: str | None, pending: int) -> Executor:
    """The executor for ``pending`` shards, opened as they are ready (on Ray, a warm-up would
    only wait)."""
    if engine == "ray":
        return open_executor(engine, workers=workers, address=address)
    count = max(1, min(workers or default_workers(), pending))
    return open_executor(engine, workers=count, address=address, warm=task.warm)


def _check_embeddings(source: Location, shards: list[Shard]) -> None:
    """Refuse embeddings that may not be published, before any work."""
    for shard in shards:
        emb = embedding_file(source, shard)
        if emb is not None:
            check_embeddings(emb, shard, open_shard(shard).metadata.num_rows)


def _settle(reuse: Reuse, names: list[str], shards: list[Shard], staging: Staging,
            source: Location, overrides: dict[str, str] | None, key: str, *, engine: str,
            workers: int | None, done: Callable[[Shard, list[VariantShardStats]], None]
            ) -> tuple[list[Shard], Reuse | None]:
    """Reuse what an incremental rebuild can without building: (shards left to build, the
    reuse their tasks still need).

    Locally every shard is settled here, on threads (reading only the new rules' columns is
    light: workers would take longer to start), and only the shards with new removals are
    built again, in full. On Ray, shards whose probe sets rule every new rule out are reused
    here, unread; the cluster matches the others."""
    local = engine != "ray"
    threads = max(1, min(workers or default_workers(), len(shards) or 1))
    rest = settle(reuse, names, shards, staging.files, source, overrides, key,
                  threads=threads if local else 1, read=local, done=done)
    return rest, None if local else reuse


def _inside(output: Location, source: Location) -> bool:
    """Whether ``output`` is the input folder or lies inside it."""
    if isinstance(output, Path) and isinstance(source, Path):
        return output.resolve() == source.resolve() or source.resolve() in output.resolve().parents
    return isinstance(output, ObjectPath) and output.is_relative_to(source)


def _claim_bucket(output: ObjectPath) -> None:
    """An OUT in object storage: its bucket must exist (scrub never creates one), and the
    uploads a killed build left incomplete under it are aborted (never visible as objects) once
    OUT is found to be this build's. A bucket root is refused: a release goes under a prefix."""
    from scrub.storage.filesystems import bucket_exists

    if not output.key:
        raise UserInputError(f"{output}: a release cannot be a whole bucket",
                             hint="give a prefix in it, such as s3://bucket/releases/2026-12")
    if not bucket_exists(output):
        raise MissingBucketError(f"{output}: no such bucket",
                                 hint="create the bucket first, or check the location")


def _rows_in(outcome: Outcome[Shard]) -> int:
    result = outcome.result
    return int(result[0]["rows_in"]) if result else 0
