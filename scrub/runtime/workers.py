"""Worker processes: how many, their thread counts, their set-up, and their exit with the parent."""

from __future__ import annotations

import atexit
import contextlib
import importlib.abc
import importlib.machinery
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType

import pyarrow as pa

#: How often a worker also compares its parent process id (a fallback to the pipe's end-of-file).
_PARENT_CHECK_S = 2.0


@contextlib.contextmanager
def worker_threads(threads: int) -> Iterator[None]:
    """Thread counts for worker processes spawned inside the block (read by polars and
    OpenBLAS as each worker starts): ``threads`` each, so workers x threads = cores."""
    names = ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def exit_with_parent() -> None:
    """In a worker process started by :mod:`multiprocessing`: exit at once when the parent
    dies, however it dies (``kill -9``, the OOM killer, a scheduler's time limit).

    A pool worker otherwise waits on its task queue forever, since it holds that queue's write
    end itself, and keeps multiprocessing's resource tracker (and the semaphores it would
    unlink) alive with it. A daemon thread waits on the pipe the parent keeps open for each
    child (its end-of-file is the parent's death), and also checks the parent's pid every few
    seconds. Calling it in a process that is not a multiprocessing child does nothing."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel
    ppid = os.getppid()

    def watch() -> None:
        while not multiprocessing.connection.wait([sentinel], timeout=_PARENT_CHECK_S):
            if os.getppid() != ppid:
                break
        os._exit(1)  # nothing to flush: the parent that would read any result is gone

    threading.Thread(target=watch, name="scrub-exit-with-parent", daemon=True).start()


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def configure_worker(threads: int) -> None:
    """Set up a spawned process that runs units beside others, ``threads`` cores each."""
    exit_with_parent()  # never outlive a killed parent (idle, holding memory and semaphores)
    # A spawned worker ends through sys.exit, whose C++ static destructors can meet Arrow's
    # thread pools still running and abort ("terminate called without an active exception").
    # Its results are already sent synchronously, so leave without those destructors.
    atexit.register(os._exit, 0)
    hide_pandas_from_arrow()
    configure_arrow(threads)


class _RefusePandas(importlib.abc.MetaPathFinder):
    """A finder that answers "not installed" for pandas, whatever is installed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def hide_pandas_from_arrow() -> None:
    """Keep pyarrow from importing pandas in this process (scrub never uses it; the import
    costs ~0.3 CPU-s): pyarrow's first ``pa.array`` asks its pandas shim, which tries the import
    once and caches the answer. Here it runs once while pandas is refused, then the finder goes:
    ``import pandas`` still works afterwards, and pyarrow's own pandas conversions retry it.
    Call it before any ``pa.array``; once pandas is loaded it does nothing."""
    if "pandas" in sys.modules:
        return
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)


def configure_arrow(threads: int) -> None:
    """Arrow's allocator and thread pools for a worker of ``threads`` cores.

    The system allocator, not mimalloc: no first-shard warm-up cost (docs/design/runtime.md)."""
    pa.set_memory_pool(pa.system_memory_pool())
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(max(threads, 2))
