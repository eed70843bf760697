"""Benchmark: a mixed plan (1M exact hashes + 100k domains + 10k URL prefixes) over 10M rows.

Uses the dataset and md5 list cached by ``bench/apply.py`` (generated if missing), adds a 100k
registrable-domain list and a 10k URL-prefix list (a few hundred of each on the dataset's own
hosts, the rest elsewhere), and times ``scrub apply`` with all three against the bare polars
read+write baseline (``bench/peers/polars_copy.py``) in the same run, both as fresh processes.
Target: >= 0.7x the baseline, peak RSS bounded as for ``bench/apply.py``.

Usage: ``python bench/engine.py [--rows 10000000] [--shards 20] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench.apply import CACHE, baseline, prepare  # noqa: E402
from bench.measure import timed  # noqa: E402
from scrub.runtime import default_workers  # noqa: E402
from scrub.synthetic import read_column  # noqa: E402
from scrub.urls import canonical_hosts, registrable_domains  # noqa: E402


def opt_out_lists(dataset: Path, domains: int, prefixes: int) -> tuple[Path, Path]:
    domain_file = CACHE / f"domains-{dataset.name}-{domains}.csv"
    prefix_file = CACHE / f"prefixes-{dataset.name}-{prefixes}.csv"
    if domain_file.is_file() and prefix_file.is_file():
        return domain_file, prefix_file
    rng = np.random.default_rng(5)
    urls = read_column(dataset, "URL").head(1_000_000)
    hosts = canonical_hosts(urls)
    real_domains = registrable_domains(hosts).drop_nulls().unique().sort()
    real_hosts = hosts.drop_nulls().unique().sort()
    chosen = real_domains.sample(min(300, len(real_domains)), seed=1).to_list()
    fake = [f"optout{i}-{rng.integers(1e9)}.com" for i in range(domains - len(chosen))]
    domain_file.write_text("type,value\n" + "".join(f"domain,{d}\n" for d in chosen + fake))
    on_real = [f"https://{h}/{w}/" for h, w in zip(
        real_hosts.sample(300, seed=2, with_replacement=True).to_list(),
        rng.choice(["images", "photos", "2019", "uploads", "media"], 300), strict=True)]
    elsewhere = [f"https://site{i}.example.org/gallery/{i}/" for i in range(prefixes - 300)]
    prefix_file.write_text("type,value\n" + "".join(f"url_prefix,{p}\n"
                                                    for p in on_real + elsewhere))
    return domain_file, prefix_file


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    dataset, md5_list = prepare(args.rows, args.shards, hits=10_000, entries=1_000_000)
    domains, prefixes = opt_out_lists(dataset, 100_000, 10_000)
    work = CACHE / "engine-runs"
    base_times, scrub_times, peaks = [], [], []
    sizes: dict[str, int] = {}
    report = ""
    for _ in range(args.repeat):
        os.sync()
        base_times.append(baseline(dataset, work / "baseline", args.workers))
        sizes["baseline"] = folder_bytes(work / "baseline")
        shutil.rmtree(work / "scrub", ignore_errors=True)
        os.sync()
        elapsed, peak, report = timed([
            sys.executable, "-m", "scrub", "apply", str(dataset), str(work / "scrub"),
            "--hashlist", str(md5_list), "--hashlist", str(domains), "--hashlist", str(prefixes),
            "--workers", str(args.workers), "--quiet", "--json"])
        scrub_times.append(elapsed)
        peaks.append(peak)
        sizes["scrub"] = folder_bytes(work / "scrub")
    shutil.rmtree(work, ignore_errors=True)
    removed = pl.read_json(report.encode())["removed_by_reason"][0]
    base, scrub = statistics.median(base_times), statistics.median(scrub_times)
    print(f"mixed plan over {args.rows:,} rows ({args.workers} workers, median of {args.repeat}):"
          f" baseline polars read+write {base:.2f} s; scrub apply {scrub:.2f} s "
          f"({args.rows / scrub / 1e6:.2f} M rows/s); ratio {base / scrub:.2f}x (target >= 0.7x);"
          f" peak RSS {max(peaks) / 2**20:.0f} MiB; removed by reason {removed}")
    # scrub writes digest columns at a lower zstd level than the rest; polars' writer has one
    # level for all columns (the baseline's): the outputs' sizes show what each wrote.
    print(f"  output parquet bytes: baseline {sizes['baseline']:,}; scrub {sizes['scrub']:,}")
    # The machine's load drifts between rounds: each round's own ratio shows how much.
    rounds = list(zip(base_times, scrub_times, strict=True))
    print("  rounds (baseline s, scrub s, ratio): "
          + "; ".join(f"{b:.2f}, {s:.2f}, {b / s:.2f}x" for b, s in rounds)
          + f"; median of the rounds' ratios {statistics.median(b / s for b, s in rounds):.2f}x")


if __name__ == "__main__":
    main()
