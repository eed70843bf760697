"""The bare baseline: read every shard with polars and write it back with scrub's writer settings.

Polars' writer takes one zstd level for every column: it writes them all at
``WRITER_COMPRESSION_LEVEL``, where scrub's own writer uses a lower level on hex-digest columns
(``scrub.dataset.compression_levels``); the benchmarks print both outputs' sizes.

``polars_copy.py DATASET OUTPUT --workers N [--cheapest]``: shards in parallel over N spawned
processes (as scrub does), each with ``POLARS_MAX_THREADS`` = cores / N. ``--cheapest`` writes
zstd level 1 without column statistics: the least a zstd rewrite of the shards can spend.
Run as its own process by the benchmarks so that both sides pay for starting an interpreter.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def copy_shard(args: tuple[str, str, bool]) -> int:
    import polars as pl

    from scrub.dataset import BATCH_ROWS, WRITER_COMPRESSION_LEVEL

    source, target, cheapest = args
    frame = pl.read_parquet(source)
    frame.write_parquet(target, compression="zstd",
                        compression_level=1 if cheapest else WRITER_COMPRESSION_LEVEL,
                        statistics=not cheapest, row_group_size=BATCH_ROWS)
    return frame.height


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cheapest", action="store_true",
                        help="zstd level 1 and no column statistics: the cheapest rewrite")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(args.output / p.name), args.cheapest)
            for p in sorted(args.dataset.glob("*.parquet"))]
    os.environ["POLARS_MAX_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.workers))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        rows = sum(pool.map(copy_shard, jobs))
    print(rows)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
    sys.exit(main())
