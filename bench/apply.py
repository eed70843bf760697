"""Benchmark: ``scrub apply`` against the tools a user would pick instead, in the same run.

Generates (and caches under ``bench/.cache``) a LAION-like dataset of 10M rows in 20 shards and a
1M-entry md5 list with 10k planted hits, then times, alternating, for ``--repeat`` rounds, each
as a fresh process timed from launch to exit (so each pays for starting Python), over the same
number of workers (``bench/peers/``):

- baseline: polars reads each shard and writes it back with scrub's writer settings (a bare copy;
  target: scrub >= 0.8x its speed);
- floor: the same copy at zstd level 1 without column statistics, the least a tool that
  rewrites the shards as zstd parquet spends (printed as a fraction of each peer's time: a target
  below it leaves scrub no time to match, whatever its zstd settings);
- DuckDB: ``COPY (SELECT * FROM read_parquet(shard) WHERE md5 NOT IN (SELECT md5 FROM list))``
  per shard, the list loaded once (target: scrub's time <= 0.6x DuckDB's);
- polars: a lazy anti-join of each shard against the list, sunk to parquet (target: <= 0.8x);
- scrub: ``scrub apply DATASET OUT --hashlist LIST`` as a user runs it.

Before each timed run the page cache's dirty pages are flushed (``os.sync``), so no run pays for
another's writeback. It prints the medians, the ratios, scrub's peak RSS (summed over its
processes) and checks that scrub removed exactly the planted rows and that each peer kept the
same rows as scrub. ``--growth`` also runs scrub alone on a 4x larger dataset to measure how peak
RSS grows with the input.

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

from bench.measure import default_workers, timed  # noqa: E402
from bench.peers.check import same_rows  # noqa: E402
from scrub.synthetic import generate_dataset, random_md5s, read_column, write_hashlist  # noqa: E402

CACHE = ROOT / ".cache"
PEERS = ROOT / "peers"
#: Peers of scrub apply: name, script, and the target for scrub's time / the peer's time.
APPLY_PEERS = (("DuckDB NOT IN", "duckdb_apply.py", 0.6),
               ("polars anti-join", "polars_antijoin.py", 0.8))
#: DuckDB's processes: 0 is as many as scrub's workers, each one connection of cores / N threads;
#: 1 is one connection on every core, shards in turn. Both measured alike on 2 cores
#: (docs/design/performance.md, 2026-12-05).
DUCKDB_WORKERS = 0


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
    """Seconds for polars to read and write every shard (bench/peers/polars_copy.py)."""
    return run_peer("polars_copy.py", [dataset], output, workers)


def floor(dataset: Path, output: Path, workers: int) -> float:
    """Seconds for polars to read every shard and write it back at zstd level 1 without
    column statistics: the least a tool rewriting the shards as zstd parquet spends (no
    matching)."""
    return run_peer("polars_copy.py", [dataset], output, workers, "--cheapest")


def run_peer(script: str, inputs: list[Path], output: Path, workers: int, *extra: str) -> float:
    """Seconds of one run of ``bench/peers/<script> INPUTS... OUTPUT --workers N``, a fresh
    process, after clearing ``output`` and flushing dirty pages."""
    shutil.rmtree(output, ignore_errors=True)
    os.sync()
    elapsed, _, _ = timed([sys.executable, str(PEERS / script), *map(str, inputs), str(output),
                           "--workers", str(workers), *extra])
    return elapsed


def run_scrub(dataset: Path, hashlist: Path, output: Path, workers: int) -> tuple[float, int, dict]:
    """Seconds, peak RSS (bytes, whole process tree) and the report of one ``scrub apply`` run."""
    shutil.rmtree(output, ignore_errors=True)
    os.sync()
    elapsed, peak, out = timed([sys.executable, "-m", "scrub", "apply", str(dataset),
                                str(output), "--hashlist", str(hashlist), "--workers",
                                str(workers), "--quiet", "--json"])
    return elapsed, peak, json.loads(out)


def measure(rows: int, shards: int, hits: int, entries: int, repeat: int, workers: int, *,
            peers: bool = True, duckdb_workers: int = DUCKDB_WORKERS) -> dict[str, float]:
    """Median seconds of the baseline, each peer (when ``peers``) and scrub, alternating."""
    dataset, hashlist = prepare(rows, shards, hits, entries)
    work = CACHE / "runs"
    chosen = APPLY_PEERS if peers else ()
    names = ["baseline", *(["floor"] if peers else []), *(p[0] for p in chosen), "scrub"]
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: list[int] = []
    report: dict = {}
    for _ in range(repeat):
        times["baseline"].append(baseline(dataset, work / "baseline", workers))
        if peers:
            times["floor"].append(floor(dataset, work / "floor", workers))
        for name, script, _target in chosen:
            count = (duckdb_workers or workers) if script.startswith("duckdb") else workers
            times[name].append(run_peer(script, [dataset, hashlist], work / script, count))
        elapsed, peak, report = run_scrub(dataset, hashlist, work / "scrub", workers)
        times["scrub"].append(elapsed)
        peaks.append(peak)
    if report["rows_removed"] != hits:
        raise SystemExit(f"expected {hits} rows removed, got {report['rows_removed']}")
    for name, script, _target in chosen:
        same_rows(work / "scrub", work / script, name=name)
    shutil.rmtree(work, ignore_errors=True)
    result: dict[str, float] = {name: statistics.median(t) for name, t in times.items()}
    result.update(rows=rows, peak_rss=max(peaks), ratio=result["baseline"] / result["scrub"])
    for name, each in times.items():
        print(f"    rounds, {name}: {', '.join(f'{t:.2f}' for t in each)} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--duckdb-workers", type=int, default=DUCKDB_WORKERS,
                        help="DuckDB processes (1: one connection on every core; "
                             "0: as many as --workers)")
    parser.add_argument("--growth", action="store_true",
                        help="also run scrub at 4x the rows (and shards) to compare peak RSS")
    args = parser.parse_args()

    print(f"scrub apply benchmark: {args.rows:,} rows in {args.shards} shards, "
          f"{args.entries:,}-entry md5 list with {args.hits:,} hits, {args.workers} workers, "
          f"median of {args.repeat}")
    first = measure(args.rows, args.shards, args.hits, args.entries, args.repeat, args.workers,
                    duckdb_workers=args.duckdb_workers)
    _print(first)
    if args.growth:
        grown = measure(4 * args.rows, 4 * args.shards, args.hits, args.entries, 1,
                        args.workers, peers=False)
        _print(grown)
        growth = grown["peak_rss"] / first["peak_rss"] - 1
        print(f"  peak RSS growth at 4x input: {growth:+.1%} (target < +10%)")


def _print(m: dict[str, float]) -> None:
    rows = m["rows"]
    print(f"  {rows:,} rows: baseline polars read+write {m['baseline']:.2f} s "
          f"({rows / m['baseline'] / 1e6:.2f} M rows/s); scrub apply {m['scrub']:.2f} s "
          f"({rows / m['scrub'] / 1e6:.2f} M rows/s); ratio {m['ratio']:.2f}x; "
          f"peak RSS {m['peak_rss'] / 2**20:.0f} MiB")
    if m["ratio"] < 0.8:
        print("  TARGET MISSED: scrub apply below 0.8x the baseline")
    if m["peak_rss"] > 2 * 2**30:
        print("  TARGET MISSED: peak RSS above 2 GiB")
    if "floor" in m:
        print(f"  floor, polars copy at zstd 1 without statistics (no matching): "
              f"{m['floor']:.2f} s")
    for name, _script, target in APPLY_PEERS:
        if name in m:
            ratio = m["scrub"] / m[name]
            verdict = "met" if ratio <= target else "MISSED"
            print(f"  {name}: {m[name]:.2f} s ({rows / m[name] / 1e6:.2f} M rows/s), same rows "
                  f"as scrub; scrub / {name} = {ratio:.2f}x (target <= {target}x: {verdict})")
            if "floor" in m:
                below = " (the target lies below the floor)" if m["floor"] / m[name] > target \
                    else ""
                print(f"    floor / {name} = {m['floor'] / m[name]:.2f}x{below}")


if __name__ == "__main__":
    main()
