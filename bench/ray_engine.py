"""Benchmark: ``scrub apply --engine ray`` on a local Ray cluster against the local executor.

Uses bench/apply.py's cached LAION-like dataset (10M rows in 20 shards) and 1M-entry md5 list
with 10k planted hits. Starts a local Ray cluster of ``--cpus`` CPUs (``ray start --head``), as
a maintainer keeps one running, then alternates for ``--repeat`` rounds, both as fresh
processes timed from launch to exit:

- local: ``scrub apply DATASET OUT --hashlist LIST --workers CPUS``;
- ray: ``scrub apply DATASET OUT --hashlist LIST --engine ray --address auto``.

Prints both throughputs (rows/s), their ratio (target >= 0.8x), peak RSS (the command's process
tree: for Ray that is the driver only, the cluster's workers are not its children), and checks
that both outputs hold the same bytes. Stops the cluster at the end.

Usage: ``python bench/ray_engine.py [--rows 10000000] [--shards 20] [--cpus 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench.apply import CACHE, prepare  # noqa: E402
from bench.measure import timed  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dataset, hashlist = prepare(args.rows, args.shards, 10_000, 1_000_000)
    work = CACHE / "ray-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([RAY, "stop", "--force"], capture_output=True)
    with socket.socket() as probe:  # a free port (6379 may hold a Redis of its own)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", str(args.cpus),
                    "--include-dashboard", "false", "--disable-usage-stats"],
                   check=True, capture_output=True)
    common = ["--hashlist", str(hashlist), "--quiet", "--json"]
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    peaks: dict[str, list[int]] = {"local": [], "ray": []}
    try:
        for _ in range(args.repeat):
            for name, extra in (("local", ["--workers", str(args.cpus)]),
                                ("ray", ["--engine", "ray", "--address", "auto"])):
                shutil.rmtree(work / name, ignore_errors=True)
                os.sync()
                elapsed, peak, _ = timed([sys.executable, "-m", "scrub", "apply", str(dataset),
                                          str(work / name), *common, *extra])
                runs[name].append(elapsed)
                peaks[name].append(peak)
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    shards = sorted(p.name for p in (work / "local").glob("*.parquet"))
    match, mismatch, errors = filecmp.cmpfiles(work / "local", work / "ray", shards,
                                               shallow=False)
    local, ray = statistics.median(runs["local"]), statistics.median(runs["ray"])
    print(f"{args.rows:,} rows, {args.shards} shards, {args.cpus} CPUs, median of "
          f"{args.repeat}")
    for name, value in (("local executor", local), ("ray (local cluster)", ray)):
        times = ", ".join(f"{t:.1f}" for t in runs[name.split()[0]])
        peak = max(peaks[name.split()[0]]) / 2**20
        print(f"  {name:<22} {value:6.1f} s  {args.rows / value / 1e6:5.2f} M rows/s  ({times}), "
              f"peak RSS {peak:,.0f} MiB")
    print(f"  output shards identical: {len(match)}/{len(shards)}"
          + (f" (differ: {mismatch + errors})" if mismatch or errors else ""))
    print(f"  ratio {local / ray:.2f}x the local executor's throughput (target >= 0.8x)")


if __name__ == "__main__":
    main()
