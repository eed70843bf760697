"""Shards in parallel for the peers: N spawned processes, cores / N threads each (as scrub does)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl


def cores() -> int:
    """The cores this process may run on (what scrub's default worker count uses)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shard_jobs(dataset: Path, output: Path) -> list[tuple[str, str]]:
    """``(input shard, output path)`` pairs, one per ``*.parquet`` of ``dataset``, same names."""
    output.mkdir(parents=True, exist_ok=True)
    return [(str(p), str(output / p.name)) for p in sorted(dataset.glob("*.parquet"))]


def over_shards(work: Callable[[tuple[str, str]], int], jobs: Sequence[tuple[str, str]],
                workers: int, *, initializer: Callable[..., None] | None = None,
                initargs: tuple[Any, ...] = ()) -> int:
    """Run ``work`` on every job over ``workers`` spawned processes; the sum of what it returns.

    Each worker gets ``POLARS_MAX_THREADS`` = cores / workers, read as polars starts in it.
    """
    os.environ["POLARS_MAX_THREADS"] = str(max(1, cores() // workers))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer,
                             initargs=initargs) as pool:
        return sum(pool.map(work, jobs))


def read_list(path: str) -> pl.DataFrame:
    """A plain-text hash list (one lowercase hex digest a line, ``#`` comments) as an ``md5``
    column, as a user would load it."""
    return pl.read_csv(path, has_header=False, comment_prefix="#", new_columns=["md5"],
                       schema_overrides={"md5": pl.String})

