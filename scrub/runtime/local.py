"""The local executor: a task's units in parallel over worker processes on this machine.

Workers are spawned (polars and Arrow thread pools do not survive ``fork``) when the executor is
entered, before the job's payload is ready; they warm up, then receive the task and its payload
once over a queue (nothing of it touches the disk). With one worker everything runs in this
process. A unit that fails is reported by name and the others carry on; a dead worker fails
its unit; a full disk stops the run; Ctrl-C stops it with :class:`~scrub.errors.Interrupted`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.queues
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from scrub.errors import StorageError
from scrub.runtime.task import Envelope, OpenedTask, Outcome, Setup, interrupted, outcome_of
from scrub.runtime.workers import configure_worker, default_workers, worker_threads

#: A module-level function a worker runs once as it starts (imports, first-call costs).
Warm = Callable[[], None]
#: A module-level function a waiting worker runs for each hint (e.g. a kernel to compile).
Prepare = Callable[[str], None]

# The worker process's opened task, set once by the initializer.
_TASK: OpenedTask | None = None


def _init_worker(queue: multiprocessing.queues.Queue, threads: int, warm: Warm | None,
                 prepare: Prepare | None) -> None:
    """Set up a worker, warm it up, then wait for the task (sent once the parent has it)."""
    global _TASK
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    configure_worker(threads)
    if warm is not None:
        warm()
    while True:
        message = queue.get()
        if isinstance(message, str):  # a hint for the coming payload: act on it while idle
            if prepare is not None:
                prepare(message)
            continue
        if message is not None:
            setup, payload = message
            _TASK = OpenedTask(setup, payload)
        return


def _ready() -> int:
    return os.getpid()


def _run_unit(unit: object) -> Envelope:
    if _TASK is None:
        raise RuntimeError("worker used before a task was loaded")
    return _TASK(unit)


class LocalExecutor:
    """Units in parallel over worker processes, started before the payload is ready.

    Use as a context manager: entering starts the workers (they import and ``warm`` while the
    parent prepares the payload), :meth:`hint` passes them work to prepare meanwhile,
    :meth:`load` hands them the task, :meth:`run` processes units."""

    def __init__(self, workers: int | None = None, *, warm: Warm | None = None,
                 prepare: Prepare | None = None) -> None:
        self.workers = max(1, workers or default_workers())
        self.threads = max(1, default_workers() // self.workers)
        self.warm_fn, self.prepare_fn = warm, prepare
        self._task: OpenedTask | None = None  # in this process, with one worker
        self._loaded = False
        self._pool: ProcessPoolExecutor | None = None
        self._queue: multiprocessing.queues.Queue | None = None
        self._env: contextlib.AbstractContextManager[None] | None = None
        self._hinted: set[str] = set()

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")
            # Read by polars and OpenBLAS in each worker as it starts; kept set until the pool
            # is shut down (workers start lazily).
            self._env = worker_threads(self.threads)
            self._env.__enter__()
            self._queue = context.Queue()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_init_worker,
                initargs=(self._queue, self.threads, self.warm_fn, self.prepare_fn))
            for _ in range(self.workers):
                self._pool.submit(_ready)  # starts every worker now
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            if not self._loaded and self._queue is not None:
                for _ in range(self.workers):
                    self._queue.put(None)  # release workers still waiting for a task
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            if self._env is not None:
                self._env.__exit__(None, None, None)
                self._env = None

    def hint(self, messages: set[str]) -> None:
        """Have every worker prepare these now, while the payload is still being built.

        A hint only: a worker that prepares something twice or not at all is still correct."""
        if self._queue is None or self._loaded:
            return
        for message in sorted(messages - self._hinted):
            for _ in range(self.workers):
                self._queue.put(message)
        self._hinted |= messages

    def load(self, setup: Setup, payload: object) -> None:
        """Hand the task and its payload to every worker, once, over a pipe (with one worker:
        open it here, raising its set-up's ScrubError)."""
        self._loaded = True
        if self._queue is not None:
            for _ in range(self.workers):
                self._queue.put((setup, payload))
        else:  # in this process, a failed set-up is this run's own error
            self._task = OpenedTask(setup, payload)
            if self._task.failed is not None:
                raise self._task.failed

    def run(self, units: Sequence[Any], *,
            on_done: Callable[[Outcome[Any]], None] | None = None) -> list[Outcome[Any]]:
        """Process ``units``; one outcome per unit, in input order."""
        if not self._loaded:
            raise RuntimeError("load a task before running")
        outcomes: list[Outcome[Any] | None] = [None] * len(units)
        finished = 0

        def record(index: int, outcome: Outcome[Any]) -> None:
            nonlocal finished
            outcomes[index] = outcome
            finished += 1
            if on_done is not None:
                on_done(outcome)

        try:
            if self._task is not None:
                for index, unit in enumerate(units):
                    record(index, outcome_of(unit, self._task(unit)))
            else:
                self._run_pool(units, record)
        except KeyboardInterrupt:
            raise interrupted(finished, len(units)) from None
        return [o for o in outcomes if o is not None]

    def _run_pool(self, units: Sequence[Any],
                  record: Callable[[int, Outcome[Any]], None]) -> None:
        pool = self._pool
        if pool is None:
            raise RuntimeError("no worker pool")
        queue = deque(enumerate(units))
        running: dict[Future[Envelope], int] = {}
        # A few units queued per worker, not all: bounded bookkeeping for 10^5 shards.
        while queue or running:
            while queue and len(running) < 2 * self.workers:
                index, unit = queue.popleft()
                running[pool.submit(_run_unit, unit)] = index
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                try:
                    envelope = future.result()
                except StorageError:
                    raise
                except Exception as exc:  # a worker died (killed, out of memory)
                    record(index, Outcome(units[index],
                                          error=f"worker failed ({type(exc).__name__})"))
                    continue
                record(index, outcome_of(units[index], envelope))

