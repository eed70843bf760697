"""Benchmark: ``scrub apply`` against a bare polars read+write baseline, in the same run.

Generates (and caches under ``bench/.cache``) a LAION-like dataset of 10M rows in 20 shards and a
1M-entry md5 list with 10k planted hits, then times, alternating, for ``--repeat`` rounds:

- baseline: ``bench/polars_copy.py``: polars reads each shard and writes it back with scrub's
  writer settings (zstd level 3, the same row-group size), shards in parallel over the same number
  of processes;
- scrub: ``scrub apply DATASET OUT --hashlist LIST`` as a user runs it.

Both run as fresh processes, timed from launch to exit, so both pay for starting Python.
Before each timed run the page cache's dirty pages are flushed (``os.sync``), so neither run pays
for the other's writeback. It prints rows/s of both (median over rounds), their ratio, scrub's
peak RSS (summed over its processes: the parent and each worker) and checks that exactly the
planted rows were removed. A second, 4x larger dataset (``--growth``) measures how peak RSS grows
with the input.

Usage: ``python bench/apply.py [--rows 10000000] [--shards 20] [--repeat 3] [--growth]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench.measure import timed  # noqa: E402
from scrub.engine.local import default_workers  # noqa: E402
from scrub.synthetic import generate_dataset, random_md5s, read_column, write_hashlist  # noqa: E402

CACHE = ROOT / ".cache"


def prepare(rows: int, shards: int, hits: int, entries: int) -> tuple[Path, Path]:
    dataset = generate_dataset(CACHE / f"laion-{rows}-{shards}", rows=rows, shards=shards,
                               seed=42, embeddings=False)
    hashlist = CACHE / f"md5-{rows}-{entries}-{hits}.txt"
    if not hashlist.is_file():
        rng = np.random.default_rng(43)
        md5 = read_column(dataset, "md5")
        planted = md5.gather(np.sort(rng.choice(len(md5), hits, replace=False))).to_numpy()
        values = np.concatenate([planted.astype(str), random_md5s(entries - hits, seed=44)])
        rng.shuffle(values)
        write_hashlist(hashlist, values, header=f"bench list: {hits} hits")
    return dataset, hashlist


def baseline(dataset: Path, output: Path, workers: int) -> float:
    """Seconds for polars to read and write every shard (bench/polars_copy.py, a fresh process)."""
    shutil.rmtree(output, ignore_errors=True)
    elapsed, _, _ = timed([sys.executable, str(ROOT / "polars_copy.py"), str(dataset),
                           str(output), "--workers", str(workers)])
    return elapsed


def run_scrub(dataset: Path, hashlist: Path, output: Path, workers: int) -> tuple[float, int, dict]:
    """Seconds, peak RSS (bytes, whole process tree) and the report of one ``scrub apply`` run."""
    shutil.rmtree(output, ignore_errors=True)
    elapsed, peak, out = timed([sys.executable, "-m", "scrub", "apply", str(dataset),
                                str(output), "--hashlist", str(hashlist), "--workers",
                                str(workers), "--quiet", "--json"])
    return elapsed, peak, json.loads(out)


def measure(rows: int, shards: int, hits: int, entries: int, repeat: int,
            workers: int) -> dict[str, float]:
    dataset, hashlist = prepare(rows, shards, hits, entries)
    work = CACHE / "runs"
    base_times, scrub_times, peaks = [], [], []
    report: dict = {}
    for _ in range(repeat):
        # Flush the other run's dirty pages first: neither run pays for the other's writeback
        # (scrub fsyncs each shard it writes; the baseline does not).
        os.sync()
        base_times.append(baseline(dataset, work / "baseline", workers))
        os.sync()
        elapsed, peak, report = run_scrub(dataset, hashlist, work / "scrub", workers)
        scrub_times.append(elapsed)
        peaks.append(peak)
    if report["rows_removed"] != hits:
        raise SystemExit(f"expected {hits} rows removed, got {report['rows_removed']}")
    shutil.rmtree(work, ignore_errors=True)
    base, scrub = statistics.median(base_times), statistics.median(scrub_times)
    return {"rows": rows, "baseline_s": base, "scrub_s": scrub,
            "baseline_rows_s": rows / base, "scrub_rows_s": rows / scrub,
            "ratio": base / scrub, "peak_rss": max(peaks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--growth", action="store_true",
                        help="also run at 4x the rows (and shards) to compare peak RSS")
    args = parser.parse_args()

    print(f"scrub apply benchmark: {args.rows:,} rows in {args.shards} shards, "
          f"{args.entries:,}-entry md5 list with {args.hits:,} hits, {args.workers} workers, "
          f"median of {args.repeat}")
    first = measure(args.rows, args.shards, args.hits, args.entries, args.repeat, args.workers)
    _print(first)
    if first["ratio"] < 0.8:
        print("  TARGET MISSED: scrub apply below 0.8x the baseline")
    if first["peak_rss"] > 2 * 2**30:
        print("  TARGET MISSED: peak RSS above 2 GiB")
    if args.growth:
        grown = measure(4 * args.rows, 4 * args.shards, args.hits, args.entries, 1, args.workers)
        _print(grown)
        growth = grown["peak_rss"] / first["peak_rss"] - 1
        print(f"  peak RSS growth at 4x input: {growth:+.1%} (target < +10%)")


def _print(m: dict[str, float]) -> None:
    print(f"  {m['rows']:,} rows: baseline polars read+write {m['baseline_s']:.2f} s "
          f"({m['baseline_rows_s'] / 1e6:.2f} M rows/s); scrub apply {m['scrub_s']:.2f} s "
          f"({m['scrub_rows_s'] / 1e6:.2f} M rows/s); ratio {m['ratio']:.2f}x; "
          f"peak RSS {m['peak_rss'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
