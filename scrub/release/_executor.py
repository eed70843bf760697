"""Where a release build's shard tasks run: in this process, in a pool of spawned worker
processes, or on a Ray cluster. Kept apart and small: it moves onto :mod:`scrub.runtime`."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from scrub.engine.filtering import warm_up
from scrub.runtime.workers import configure_worker, default_workers
from scrub.engine.plan import MatchPlan
from scrub.release.reuse import Reuse, rebuild_shard
from scrub.release.shard import ShardTask, build_shard
from scrub.release.stats import VariantShardStats
from scrub.runtime.workers import worker_threads

__all__ = ["default_workers", "run_tasks"]


@dataclass
class _Worker:
    """What every task of a worker shares: the plan, the variants' sources, the reuse."""

    plan: MatchPlan
    groups: list[frozenset[int]]
    reuse: Reuse | None = None


_WORKER: _Worker | None = None


def _init(plan: MatchPlan, groups: list[frozenset[int]], reuse: Reuse | None = None) -> None:
    global _WORKER
    _WORKER = _Worker(plan, groups, reuse)


def _init_from(plans: multiprocessing.queues.Queue[tuple[MatchPlan, list[frozenset[int]],
                                                         Reuse | None]],
               threads: int) -> None:
    """A worker's initializer: set it up as apply's workers are, then wait for the plan (sent
    once every worker is starting)."""
    configure_worker(threads)
    warm_up()
    _init(*plans.get())


def _task(task: ShardTask) -> list[VariantShardStats]:
    if _WORKER is None:
        raise RuntimeError("release worker used before its set-up")
    if _WORKER.reuse is not None:
        return rebuild_shard(_WORKER.plan, _WORKER.groups, _WORKER.reuse, task)
    return build_shard(_WORKER.plan, _WORKER.groups, task)


@dataclass
class _Payload:
    """What a Ray worker opens once: the worker set-up and every task."""

    worker: _Worker
    tasks: list[ShardTask]


def _ray_setup(payload: _Payload) -> Callable[[int], list[dict[str, object]]]:
    """A Ray worker's set-up; its calls give JSON-able stats (the completion markers' form)."""
    global _WORKER
    _WORKER = payload.worker
    return lambda index: [stat.marker() for stat in _task(payload.tasks[index])]


def run_tasks(tasks: list[ShardTask], plan: MatchPlan, groups: list[frozenset[int]],
              reuse: Reuse | None, *, engine: str, workers: int | None,
              address: str | None) -> Iterator[tuple[int, list[VariantShardStats]]]:
    """Run every task (rebuilds when ``reuse`` is given); (task index, per-variant stats) as
    each finishes."""
    count = max(1, min(workers or (os.cpu_count() or 1), len(tasks) or 1))
    if engine == "ray":
        from scrub.runtime import connect, ray_map

        connect(address, num_cpus=workers)
        payload = _Payload(_Worker(plan, groups, reuse), tasks)
        for index, result in ray_map(_ray_setup, payload, len(tasks), workers=workers):
            yield index, [VariantShardStats.from_record(body) for body in result]
    elif count == 1:
        _init(plan, groups, reuse)
        yield from enumerate(map(_task, tasks))
    else:
        # spawn, not fork: a forked child of a process running polars/Arrow threads can
        # deadlock on their locks. The plan goes through a queue, not the initializer's
        # arguments, so the children start together (see docs/design/release.md).
        context = multiprocessing.get_context("spawn")
        plans: multiprocessing.queues.Queue[tuple[MatchPlan, list[frozenset[int]],
                                                  Reuse | None]] = context.Queue()
        threads = max(1, default_workers() // count)
        with worker_threads(threads), ProcessPoolExecutor(
                count, mp_context=context, initializer=_init_from,
                initargs=(plans, threads)) as pool:
            results = pool.map(_task, tasks)
            for _ in range(count):
                plans.put((plan, groups, reuse))
            yield from enumerate(results)
