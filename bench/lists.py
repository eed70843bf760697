"""Benchmark: importing a large md5 list into the store, and canonicalising URLs.

1. Writes (and caches under ``bench/.cache``) a plain-text list of 20M random md5 values, then
   times ``scrub lists import`` of it as a sensitive (encrypted) list, as a user runs it, and
   reports entries/s and peak RSS (targets: >= 1M entries/s, < 1 GiB).
2. Canonicalises the URLs of 1M generated LAION-like rows with one polars thread and reports
   URLs/s (target: >= 1M/s per core), against the plain per-URL reference implementation.

Usage: ``python bench/lists.py [--entries 20000000] [--urls 1000000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench.measure import timed  # noqa: E402
from scrub.crypto import write_key_file  # noqa: E402
from scrub.keys import keys_to_hex  # noqa: E402

CACHE = ROOT / ".cache"


def big_list(entries: int) -> Path:
    path = CACHE / f"md5-list-{entries}.txt"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as handle:
        handle.write(b"# benchmark list\n")
        for start in range(0, entries, 1_000_000):
            count = min(1_000_000, entries - start)
            text = keys_to_hex(rng.integers(0, 256, (count, 16), dtype=np.uint8))
            handle.write(b"\n".join(text.tolist()) + b"\n")
    os.replace(tmp, path)
    return path


def bench_import(entries: int, repeat: int) -> None:
    listing = big_list(entries)
    work = CACHE / "store-run"
    times, peaks = [], []
    for _ in range(repeat):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        key = work / "data.key"
        write_key_file(key)
        os.sync()
        elapsed, peak, _ = timed([sys.executable, "-m", "scrub", "lists", "import", str(listing),
                                  "--name", "bench", "--source", "bench", "--version", "1",
                                  "--key-file", str(key), "--store", str(work / "store")])
        times.append(elapsed)
        peaks.append(peak)
    shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(times)
    print(f"  import {entries:,} md5 (sensitive, encrypted): {median:.2f} s, "
          f"{entries / median / 1e6:.2f} M entries/s; peak RSS {max(peaks) / 2**20:.0f} MiB "
          f"(targets >= 1 M/s, < 1024 MiB)")


def bench_urls(rows: int, repeat: int) -> None:
    code = f"""
import time, statistics, sys
sys.path.insert(0, {str(ROOT.parent)!r})
from scrub.synthetic import generate_dataset, read_column
from scrub.urls import canonicalize_urls, canonical_url
data = generate_dataset({str(CACHE / f'urls-{rows}')!r}, rows={rows}, shards=1, seed=5,
                        embeddings=False)
urls = read_column(data, "URL")
canonicalize_urls(urls.head(1000))
times = []
for _ in range({repeat}):
    t = time.perf_counter(); canonicalize_urls(urls); times.append(time.perf_counter() - t)
sample = urls.head(200_000).to_list()
t = time.perf_counter(); [canonical_url(u) for u in sample]; ref = time.perf_counter() - t
vec = statistics.median(times)
print(f"  canonicalise {{len(urls):,}} LAION-like URLs, 1 thread: {{vec:.2f}} s, "
      f"{{len(urls) / vec / 1e6:.2f}} M URLs/s (target >= 1 M/s per core); reference "
      f"implementation {{len(sample) / ref / 1e6:.2f}} M URLs/s; ratio "
      f"{{(len(urls) / vec) / (len(sample) / ref):.1f}}x")
"""
    env = dict(os.environ, POLARS_MAX_THREADS="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000_000)
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"list store benchmark (median of {args.repeat})")
    bench_import(args.entries, args.repeat)
    bench_urls(args.urls, args.repeat)


if __name__ == "__main__":
    main()
