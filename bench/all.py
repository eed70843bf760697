"""Every scrub-versus-peer benchmark of issue 22, one after the other, in one command.

Runs ``bench/apply.py`` (scrub apply against a bare polars copy, DuckDB and a polars anti-join),
``bench/release.py`` (both release variants against the polars two-variant peer) at ``--rows``
rows in shards of ``--shard-rows`` (the benchmarks' default 500k), then ``bench/release.py
--incremental`` at its default size, each printing its medians, ratios and targets.

Usage: ``python bench/all.py [--rows 4000000] [--shard-rows 500000] [--repeat 3]`` (or
``make bench``)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--shard-rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    size = ["--rows", str(args.rows), "--shards", str(max(1, -(-args.rows // args.shard_rows))),
            "--repeat", str(args.repeat)]
    runs = [["apply.py", *size], ["release.py", *size]]
    if not args.skip_incremental:
        runs.append(["release.py", "--incremental", "--repeat", str(args.repeat)])
    for script, *options in runs:
        print(f"$ python bench/{script} {' '.join(options)}", flush=True)
        done = subprocess.run([sys.executable, str(ROOT / script), *options], check=False)
        if done.returncode != 0:
            return done.returncode
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
