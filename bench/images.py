"""Benchmark: image hashing throughput per core, and rewriting a tar against a plain copy.

1. Hashing (one process, one core): 256x256 and 512x512 JPEGs, for md5 only, PDQ alone, and
   md5 + PDQ + pHash together (decoded once). Target: the three together <= 1.3x PDQ alone.
2. Rewriting a 10,000-sample webdataset tar (jpg + txt + json per sample) with 10 samples removed,
   against ``shutil.copyfile`` of the same tar, both after ``os.sync`` and both fsynced; the
   rewrite's time includes reading every header. Target: <= 2x the copy. Measured for 256x256
   images (img2dataset's default size) and 64x64 ones (the hard case: headers are a third of
   the tar's blocks).

Usage: ``python bench/images.py [--images 400] [--samples 10000] [--tar-sizes 256,64]
[--repeat 5]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# "per core": numpy's BLAS (pHash's resize) on one thread, as in scrub's hashing workers
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scrub.images.hashing import hash_image  # noqa: E402
from scrub.images.synthetic import generate_webdataset, jpeg_bytes, picture  # noqa: E402
from scrub.images.tars import group_samples, read_members, rewrite_tar  # noqa: E402


def hashing(count: int, size: int, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(size)
    images = [jpeg_bytes(picture(rng, size)) for _ in range(count)]
    kinds = (("md5", ["md5"]), ("pdq", ["pdq"]), ("md5+pdq+phash", ["md5", "pdq", "phash"]))
    times: dict[str, list[float]] = {label: [] for label, _ in kinds}
    for _ in range(repeat):  # rounds interleaved, so the machine's noise falls on every kind
        for label, types in kinds:
            start = time.perf_counter()
            for data in images:
                hash_image(data, types)
            times[label].append(time.perf_counter() - start)
    return {label: count / statistics.median(values) for label, values in times.items()}


def rewrite(samples: int, size: int, repeat: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_webdataset(Path(tmp) / "wds", shards=1, samples=samples, seed=1,
                                     size=size, failed_every=0)
        tar = folder / "00000.tar"
        members = read_members(tar)
        drop = {s.key for s in group_samples(members)[:: samples // 10][:10]}
        copies, rewrites = [], []
        for _ in range(repeat):
            os.sync()
            start = time.perf_counter()
            shutil.copyfile(tar, Path(tmp) / "copy.tar")
            with open(Path(tmp) / "copy.tar", "rb+") as handle:
                os.fsync(handle.fileno())
            copies.append(time.perf_counter() - start)
            os.sync()
            start = time.perf_counter()
            rewrite_tar(tar, Path(tmp) / "rewritten.tar", read_members(tar), drop)
            rewrites.append(time.perf_counter() - start)
        return statistics.median(copies), statistics.median(rewrites), tar.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--tar-sizes", default="256,64",
                        help="image sizes of the tars to rewrite, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for size in (256, 512):
        rates = hashing(args.images, size, args.repeat)
        ratio = rates["pdq"] / rates["md5+pdq+phash"]
        print(f"hashing {size}x{size} JPEGs, one core (median of {args.repeat}): "
              + "; ".join(f"{k} {v:,.0f} images/s" for k, v in rates.items())
              + f"; md5+pdq+phash takes {ratio:.2f}x the time of pdq alone (target <= 1.3x)")
    for size in (int(v) for v in args.tar_sizes.split(",") if v.strip()):
        copy, rewritten, length = rewrite(args.samples, size, args.repeat)
        print(f"tar of {args.samples:,} samples ({size}x{size} JPEGs, {length / 2**20:,.0f} MiB), "
              f"10 removed (median of {args.repeat}): plain copy {copy * 1000:.0f} ms; "
              f"rewrite {rewritten * 1000:.0f} ms; {rewritten / copy:.2f}x the copy "
              f"(target <= 2x)")

if __name__ == "__main__":
    main()
