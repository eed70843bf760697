"""The local executor: shards in parallel over worker processes on this machine.

The unit of work, of resume and of parallelism is the shard. Workers are started with ``spawn``
(polars and Arrow thread pools do not survive ``fork``) and receive the plan once, through their
initializer, over a pipe; nothing of the plan touches the disk. Each worker filters a shard into the
job's temporary folder and commits it (rename + completion marker). A shard that fails is reported
by name and the others carry on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import pyarrow as pa

from scrub.dataset import Shard
from scrub.engine.checkpoint import JobState
from scrub.engine.filtering import filter_shard
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats
from scrub.errors import Interrupted, ScrubError


@dataclass
class ShardOutcome:
    """A shard's stats, or the one-line reason it failed."""

    shard: Shard
    stats: ShardStats | None = None
    error: str | None = None


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


# Worker-process globals, set once by the initializer.
_PLAN: MatchPlan | None = None
_OVERRIDES: Mapping[str, str] | None = None


def _init_worker(plan: MatchPlan, overrides: Mapping[str, str] | None, threads: int) -> None:
    global _PLAN, _OVERRIDES
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(max(threads, 2))
    _PLAN, _OVERRIDES = plan, overrides


def _run_one(state: JobState, shard: Shard) -> ShardOutcome:
    if _PLAN is None:
        raise RuntimeError("worker used before its initializer ran")
    return process_one(_PLAN, state, shard, _OVERRIDES)


def process_one(plan: MatchPlan, state: JobState, shard: Shard,
                overrides: Mapping[str, str] | None) -> ShardOutcome:
    """Filter and commit one shard; failures become an outcome, never an exception."""
    tmp = state.tmp_dir / f"{shard.name}.partial"
    try:
        stats = filter_shard(plan, shard, tmp, column_overrides=overrides)
        state.commit(shard, tmp, stats)
        return ShardOutcome(shard, stats=stats)
    except ScrubError as exc:
        return ShardOutcome(shard, error=_strip_path(exc.message, shard))
    except Exception as exc:  # an internal error: name its type only, messages may hold values
        detail = traceback.format_exc() if os.environ.get("SCRUB_DEBUG") else ""
        return ShardOutcome(shard, error=f"internal error ({type(exc).__name__}){detail}")
    finally:
        tmp.unlink(missing_ok=True)


def _strip_path(message: str, shard: Shard) -> str:
    prefix = f"{shard.path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def run_local(plan: MatchPlan, state: JobState, shards: Sequence[Shard], *,
              workers: int | None = None, overrides: Mapping[str, str] | None = None,
              on_done: Callable[[ShardOutcome], None] | None = None) -> list[ShardOutcome]:
    """Process ``shards``; returns one outcome per shard, in input order.

    ``workers=1`` runs in this process. Ctrl-C stops the pool, keeps the completed shards and
    raises :class:`Interrupted`.
    """
    workers = min(workers or default_workers(), max(len(shards), 1))
    outcomes: dict[str, ShardOutcome] = {}

    def record(outcome: ShardOutcome) -> None:
        outcomes[outcome.shard.name] = outcome
        if on_done is not None:
            on_done(outcome)

    try:
        if workers == 1:
            for shard in shards:
                record(process_one(plan, state, shard, overrides))
        else:
            _run_pool(plan, state, shards, workers, overrides, record)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; {len(outcomes)} of {len(shards)} shards finished in this run",
            hint="rerun the same command to resume from the completed shards") from None
    return [outcomes[s.name] for s in shards]


def _run_pool(plan: MatchPlan, state: JobState, shards: Sequence[Shard], workers: int,
              overrides: Mapping[str, str] | None,
              record: Callable[[ShardOutcome], None]) -> None:
    threads = max(1, default_workers() // workers)
    context = multiprocessing.get_context("spawn")
    previous = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = str(threads)  # read by polars when a worker imports it
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_init_worker,
                                   initargs=(plan, overrides, threads))
    finally:
        if previous is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = previous
    try:
        queue = deque(shards)
        running: dict[Future[ShardOutcome], Shard] = {}
        # Keep a few tasks queued per worker, not all: bounded bookkeeping for 10^5 shards.
        while queue or running:
            while queue and len(running) < 2 * workers:
                shard = queue.popleft()
                running[pool.submit(_run_one, state, shard)] = shard
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                shard = running.pop(future)
                try:
                    record(future.result())
                except Exception as exc:  # a worker died (killed, out of memory)
                    record(ShardOutcome(shard, error=f"worker failed ({type(exc).__name__})"))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
