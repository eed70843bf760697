"""Peer of ``scrub apply --hashlist``: DuckDB's ``COPY ... WHERE md5 NOT IN (list)`` per shard.

``duckdb_apply.py DATASET LIST OUTPUT --workers N``: the list is loaded once per connection
(``read_csv``) into a table; then each shard runs
``COPY (SELECT * FROM read_parquet(shard) WHERE md5 NOT IN (SELECT md5 FROM list)) TO
OUTPUT/<shard name> (FORMAT parquet, COMPRESSION zstd)`` at zstd level 3 and scrub's row-group
size. ``--workers 1`` is one connection on every core, shards in turn (DuckDB's own threads);
N > 1 is N spawned processes, one connection of cores / N threads each. Prints the rows written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.peers.parallel import cores, over_shards, shard_jobs  # noqa: E402

_CONNECTION: duckdb.DuckDBPyConnection | None = None


def _literal(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def connect(hashlist: str, threads: int) -> None:
    """Open this process's connection and load the list into table ``list``, once."""
    global _CONNECTION
    _CONNECTION = duckdb.connect(config={"threads": threads})
    _CONNECTION.execute("SET enable_progress_bar = false")
    _CONNECTION.execute(
        "CREATE TABLE list AS SELECT md5 FROM read_csv(" + _literal(hashlist)
        + ", header = false, comment = '#', columns = {'md5': 'VARCHAR'})")


def copy_shard(job: tuple[str, str]) -> int:
    from scrub.dataset import BATCH_ROWS, WRITER_COMPRESSION_LEVEL

    source, target = job
    assert _CONNECTION is not None
    _CONNECTION.execute(
        f"COPY (SELECT * FROM read_parquet({_literal(source)}) "
        f"WHERE md5 NOT IN (SELECT md5 FROM list)) TO {_literal(target)} "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {WRITER_COMPRESSION_LEVEL}, "
        f"ROW_GROUP_SIZE {BATCH_ROWS})")
    row = _CONNECTION.execute(
        f"SELECT count(*) FROM read_parquet({_literal(target)})").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("hashlist", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    jobs = shard_jobs(args.dataset, args.output)
    if args.workers == 1:
        connect(str(args.hashlist), cores())
        print(sum(copy_shard(job) for job in jobs))
    else:
        print(over_shards(copy_shard, jobs, args.workers, initializer=connect,
                          initargs=(str(args.hashlist), max(1, cores() // args.workers))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
