"""Peer of ``scrub apply --hashlist``: a polars lazy anti-join of each shard against the list.

``polars_antijoin.py DATASET LIST OUTPUT --workers N``: each of N spawned processes loads the
list once, then per shard ``scan_parquet(shard).join(list, on="md5", how="anti")`` sinks to
``OUTPUT/<shard name>`` with zstd (level 3, scrub's row-group size), the input's row order kept.
Prints the rows written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.peers.parallel import cores, over_shards, read_list, shard_jobs  # noqa: E402

_LIST: pl.LazyFrame | None = None


def load(path: str) -> None:
    global _LIST
    _LIST = read_list(path).lazy()


def anti_join(job: tuple[str, str]) -> int:
    from scrub.dataset import BATCH_ROWS, WRITER_COMPRESSION_LEVEL

    source, target = job
    assert _LIST is not None
    (pl.scan_parquet(source).join(_LIST, on="md5", how="anti", maintain_order="left")
     .sink_parquet(target, compression="zstd",
                   compression_level=WRITER_COMPRESSION_LEVEL, row_group_size=BATCH_ROWS))
    return pl.scan_parquet(target).select(pl.len()).collect().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("hashlist", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=cores())
    args = parser.parse_args()
    jobs = shard_jobs(args.dataset, args.output)
    print(over_shards(anti_join, jobs, args.workers, initializer=load,
                      initargs=(str(args.hashlist),)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
