"""The bare copy in object storage: pyarrow reads each shard object and writes it under another
prefix with scrub's writer settings (``scrub.engine.filtering.open_writer``), one row group at a
time as read. The floor of any tool that rewrites the shards of a bucket.

``pyarrow_s3_copy.py s3://BUCKET/IN s3://BUCKET/OUT --workers N``: shards in parallel over N
spawned processes; pyarrow's own S3 filesystem, from the standard AWS settings of the
environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, the credentials). Run as its own process by
bench/s3.py, so that both sides pay for starting an interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def filesystem() -> Any:
    """pyarrow's S3 filesystem for the store the environment names."""
    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    scheme, _, host = endpoint.rpartition("://")
    return pafs.S3FileSystem(region=os.environ.get("AWS_REGION", "us-east-1"),
                             endpoint_override=host or None, scheme=scheme or "https")


def copy_shard(job: tuple[str, str]) -> int:
    """Copy one shard object (``bucket/key`` paths); its rows."""
    import pyarrow.parquet as pq

    from scrub.engine.filtering import open_writer

    source, target = job
    fs = filesystem()
    rows = 0
    with fs.open_input_file(source) as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=True)
        with fs.open_output_stream(target) as out, \
                open_writer(out, parquet.schema_arrow) as writer:
            for index in range(parquet.metadata.num_row_groups):
                table = parquet.read_row_group(index, use_threads=False)
                writer.write_table(table)
                rows += table.num_rows
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", help="s3://BUCKET/PREFIX of the shards")
    parser.add_argument("output", help="s3://BUCKET/PREFIX to write them to")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    from pyarrow.fs import FileSelector

    from bench.peers.parallel import over_shards

    source = args.dataset.removeprefix("s3://").rstrip("/")
    target = args.output.removeprefix("s3://").rstrip("/")
    listed = filesystem().get_file_info(FileSelector(source))
    jobs = [(info.path, f"{target}/{info.base_name}") for info in sorted(listed,
            key=lambda i: i.path) if info.is_file and info.base_name.endswith(".parquet")]
    print(over_shards(copy_shard, jobs, args.workers))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
    sys.exit(main())
