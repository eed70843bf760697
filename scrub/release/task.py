"""The release build task: one input shard built into every variant under the staging folder
(in an incremental rebuild on Ray: reused from the previous release when the new rules remove
nothing more from it), then recorded done there. Runs unchanged on every executor of
:mod:`scrub.runtime`; its result is each variant's stats in their completion markers' form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scrub.dataset import Shard
from scrub.engine.filtering import warm_up
from scrub.engine.plan import MatchPlan
from scrub.errors import from_os_error
from scrub.release.probe import Probing
from scrub.release.reuse import Reuse, rebuild_shard
from scrub.release.shard import ShardTask, build_shard, embedding_file
from scrub.release.staging import Location, Staging
from scrub.release.stats import VariantShardStats

#: A shard's result: each variant's stats as its completion marker holds them (JSON-able).
Result = list[dict[str, object]]


def warm() -> None:
    """Exercise the read, filter and write paths once (a worker's first shard starts warm)."""
    warm_up()


@dataclass(frozen=True)
class Payload:
    """What every shard of a build shares: the plan and each variant's sources (``groups``),
    the variants' names, the staging folder, the input folder (for embeddings), the removal
    list's HMAC key, what to record for incremental rebuilds, the column role overrides, and
    the previous release when shards are to be reused where they can be."""

    plan: MatchPlan
    groups: list[frozenset[int]]
    names: list[str]
    staging: Staging
    source: Location
    removal_key: str
    probing: Probing
    overrides: dict[str, str] | None
    reuse: Reuse | None = None

    def shard_task(self, shard: Shard) -> ShardTask:
        return ShardTask(self.names, shard, self.staging.files,
                         embedding_file(self.source, shard), self.removal_key, self.probing,
                         self.overrides)


def setup(payload: Payload) -> Callable[[Shard], Result]:
    """The task over ``payload``: build (or reuse) one shard, record it done."""
    def run(shard: Shard) -> Result:
        try:
            stats = process_shard(payload, shard)
        except OSError as exc:  # a path of OUT the operator chose, or a full disk (stops all)
            error = from_os_error(exc)
            if error is None:
                raise
            raise error from None
        payload.staging.mark_done(shard.name, dict(zip(payload.names, stats, strict=True)))
        return [stat.marker() for stat in stats]

    return run


def process_shard(payload: Payload, shard: Shard) -> list[VariantShardStats]:
    """Every variant of ``shard`` staged; per variant its stats."""
    task = payload.shard_task(shard)
    if payload.reuse is not None:
        return rebuild_shard(payload.plan, payload.groups, payload.reuse, task)
    return build_shard(payload.plan, payload.groups, task)


def stats_of(result: Result) -> list[VariantShardStats]:
    """The per-variant stats of a shard's result."""
    return [VariantShardStats.from_record(body) for body in result]
