"""The local executor: shards in parallel over worker processes on this machine.

The unit of work, of resume and of parallelism is the shard. Workers are started with ``spawn``
(polars and Arrow thread pools do not survive ``fork``), before the plan is ready, and receive it
once over a pipe; nothing of the plan touches the disk. Each worker filters a shard into the
job's temporary folder and commits it (rename + completion marker). A shard that fails is reported
by name and the others carry on.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.queues
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
from scrub.engine.decisions import write_decisions
from scrub.engine.filtering import filter_shard, warm_up
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats
from scrub.engine.warmup import compile_kernel
from scrub.errors import Interrupted, ScrubError, StorageError, from_os_error
from scrub.images.webdataset import filter_webdataset_shard, tar_of
from scrub.workers import exit_with_parent, worker_threads


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
_KEY: bytes | None = None


def configure_worker(threads: int) -> None:
    """Set up a spawned process that filters shards beside others, ``threads`` cores each."""
    exit_with_parent()  # never outlive a killed parent (idle, holding memory and semaphores)
    # A spawned worker ends through sys.exit, whose C++ static destructors can meet Arrow's
    # thread pools still running and abort ("terminate called without an active exception").
    # Its results are already sent synchronously, so leave without those destructors.
    atexit.register(os._exit, 0)
    # Arrow's default mimalloc pool costs ~0.5 s of page faults on a worker's first shard (measured
    # on LAION-like 500k-row shards); the system allocator has no such warm-up and the same speed
    # afterwards.
    pa.set_memory_pool(pa.system_memory_pool())
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(max(threads, 2))
    warm_up()


def _init_worker(plans: multiprocessing.queues.Queue, threads: int) -> None:
    """Set up a worker, warm it up, then wait for the plan (sent once the parent has parsed it)."""
    global _PLAN, _OVERRIDES, _KEY
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    configure_worker(threads)
    while True:
        message = plans.get()
        if isinstance(message, str):  # a kernel the coming plan needs: prepare it while idle
            compile_kernel(message)
            continue
        if message is not None:
            _PLAN, _OVERRIDES, _KEY = message
        return


def _ready() -> int:
    return os.getpid()


def _run_one(state: JobState, shard: Shard) -> ShardOutcome:
    if _PLAN is None:
        raise RuntimeError("worker used before a plan was loaded")
    return process_one(_PLAN, state, shard, _OVERRIDES, _KEY)


def process_one(plan: MatchPlan, state: JobState, shard: Shard,
                overrides: Mapping[str, str] | None, key: bytes | None = None) -> ShardOutcome:
    """Filter and commit one shard; failures become an outcome, never an exception."""
    tmp = state.tmp_dir / f"{shard.name}.partial"
    tar = tar_of(shard)
    tmp_tar = state.tmp_dir / f"{tar.name}.partial" if tar is not None else None
    try:
        if tar is not None and tmp_tar is not None:  # a webdataset shard: sidecar + tar
            stats, records = filter_webdataset_shard(plan, shard, tmp, tmp_tar,
                                                     column_overrides=overrides)
        else:
            stats, records = filter_shard(plan, shard, tmp, column_overrides=overrides)
        stats.decisions = write_decisions(state.root / "decisions", shard.name, records, plan,
                                          key)
        if tar is not None and tmp_tar is not None:
            os.replace(tmp_tar, state.output / tar.name)
        state.commit(shard, tmp, stats)
        return ShardOutcome(shard, stats=stats)
    except StorageError:
        raise  # a full disk fails every shard alike: stop the run (completed shards are kept)
    except ScrubError as exc:
        return ShardOutcome(shard, error=_strip_path(exc.message, shard))
    except Exception as exc:  # an internal error: name its type only, messages may hold values
        full = from_os_error(exc, state.output / shard.name) if isinstance(exc, OSError) else None
        if isinstance(full, StorageError):
            raise full from None  # the disk, not this shard: every shard would fail alike
        detail = traceback.format_exc() if os.environ.get("SCRUB_DEBUG") else ""
        return ShardOutcome(shard, error=f"internal error ({type(exc).__name__}){detail}")
    finally:
        tmp.unlink(missing_ok=True)
        if tmp_tar is not None:
            tmp_tar.unlink(missing_ok=True)


def _strip_path(message: str, shard: Shard) -> str:
    prefix = f"{shard.path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class LocalExecutor:
    """Shards in parallel over worker processes, started before the plan is ready.

    Use as a context manager: entering starts the workers (they import and warm up while the
    parent parses lists), :meth:`load` hands them the plan, :meth:`run` processes shards. With one
    worker everything runs in this process.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or default_workers())
        self.threads = max(1, default_workers() // self.workers)
        self._plan: MatchPlan | None = None
        self._overrides: Mapping[str, str] | None = None
        self._key: bytes | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._queue: multiprocessing.queues.Queue | None = None
        self._env: contextlib.AbstractContextManager[None] | None = None
        self._warmed: set[str] = set()

    def __enter__(self) -> "LocalExecutor":
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")
            # Read by polars and OpenBLAS in each worker as it starts; kept set until the pool
            # is shut down (workers start lazily).
            self._env = worker_threads(self.threads)
            self._env.__enter__()
            self._queue = context.Queue()
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                             initializer=_init_worker,
                                             initargs=(self._queue, self.threads))
            for _ in range(self.workers):
                self._pool.submit(_ready)  # starts every worker now
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            if self._plan is None and self._queue is not None:
                for _ in range(self.workers):
                    self._queue.put(None)  # release workers still waiting for a plan
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            if self._env is not None:
                self._env.__exit__(None, None, None)
                self._env = None

    def warm(self, kernels: set[str]) -> None:
        """Have every worker compile these kernels now, while the plan is still being built.

        A hint only: a worker that compiles a kernel twice or not at all is still correct."""
        if self._queue is None or self._plan is not None:
            return
        for kernel in sorted(kernels - self._warmed):
            for _ in range(self.workers):
                self._queue.put(kernel)
        self._warmed |= kernels

    def load(self, plan: MatchPlan, overrides: Mapping[str, str] | None = None,
             key: bytes | None = None) -> None:
        """Hand the plan (and the data key for decision records) to every worker, once, over a
        pipe: nothing touches the disk."""
        self._plan, self._overrides, self._key = plan, overrides, key
        if self._queue is not None:
            for _ in range(self.workers):
                self._queue.put((plan, overrides, key))

    def run(self, state: JobState, shards: Sequence[Shard], *,
            on_done: Callable[[ShardOutcome], None] | None = None) -> list[ShardOutcome]:
        """Process ``shards``; one outcome per shard, in input order.

        Ctrl-C stops the workers, keeps the completed shards and raises :class:`Interrupted`.
        """
        if self._plan is None:
            raise RuntimeError("load a plan before running")
        outcomes: dict[str, ShardOutcome] = {}

        def record(outcome: ShardOutcome) -> None:
            outcomes[outcome.shard.name] = outcome
            if on_done is not None:
                on_done(outcome)

        try:
            if self._pool is None:
                for shard in shards:
                    record(process_one(self._plan, state, shard, self._overrides, self._key))
            else:
                self._run_pool(state, shards, record)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; {len(outcomes)} of {len(shards)} shards finished in this run",
                hint="rerun the same command to resume from the completed shards") from None
        return [outcomes[s.name] for s in shards]

    def _run_pool(self, state: JobState, shards: Sequence[Shard],
                  record: Callable[[ShardOutcome], None]) -> None:
        pool = self._pool
        if pool is None:
            raise RuntimeError("no worker pool")
        queue = deque(shards)
        running: dict[Future[ShardOutcome], Shard] = {}
        # A few tasks queued per worker, not all: bounded bookkeeping for 10^5 shards.
        while queue or running:
            while queue and len(running) < 2 * self.workers:
                shard = queue.popleft()
                running[pool.submit(_run_one, state, shard)] = shard
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                shard = running.pop(future)
                try:
                    record(future.result())
                except StorageError:
                    raise  # the disk is full: the other shards would fail alike
                except Exception as exc:  # a worker died (killed, out of memory)
                    record(ShardOutcome(shard, error=f"worker failed ({type(exc).__name__})"))

