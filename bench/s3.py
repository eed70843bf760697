"""Benchmark: ``scrub apply`` from S3 to S3 against pyarrow's bare copy of the same objects.

Starts its own S3 server (SeaweedFS ``weed mini`` on loopback, as the tests do:
tests/s3server.py), uploads bench/apply.py's LAION-like dataset (cached under ``bench/.cache``;
default 2M rows in 8 shards, a 1M-entry md5 list with 10k planted hits) to a fresh bucket,
then times, alternating, for ``--repeat`` rounds, each a fresh process timed from launch to
exit over the same number of workers:

- bare copy: pyarrow reads each shard object and writes it under another prefix with scrub's
  writer settings, row groups as read (bench/peers/pyarrow_s3_copy.py);
- scrub S3: ``scrub apply s3://B/laion s3://B/clean --hashlist LIST``;
- scrub local: ``scrub apply DATASET OUT --hashlist LIST`` on the same data on local disk.

Prints the medians, scrub S3's time over the bare copy's (target <= 1.25, i.e. >= 0.8x its
throughput), the peak RSS of both scrub runs (summed over their process trees; target: the S3
run's <= the local run's + 20%), and checks that the S3 run removed the planted rows and wrote
the local run's bytes. Stops the server at the end.

Usage: ``python bench/s3.py [--rows 2000000] [--shards 8] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench.apply import CACHE, PEERS, prepare  # noqa: E402
from bench.measure import default_workers, timed  # noqa: E402
from tests.s3server import SeaweedServer, local_tree  # noqa: E402

#: scrub S3's time over the bare copy's, at most; its peak RSS over the local run's, at most.
TIME_TARGET, RSS_TARGET = 1.25, 1.20


def delete_prefix(server: SeaweedServer, bucket: str, prefix: str) -> None:
    """Remove every object under ``prefix`` (between rounds; not timed)."""
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents") or []]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def scrub_apply(source: str, output: str, hashlist: Path, workers: int, hits: int
                ) -> tuple[float, int]:
    """Seconds and peak RSS (bytes, whole process tree) of one ``scrub apply`` run, which must
    remove the ``hits`` planted rows."""
    os.sync()
    elapsed, peak, out = timed([sys.executable, "-m", "scrub", "apply", source, output,
                                "--hashlist", str(hashlist), "--workers", str(workers),
                                "--quiet", "--json"])
    removed = json.loads(out)["rows_removed"]
    if removed != hits:
        raise SystemExit(f"{source}: expected {hits} rows removed, got {removed}")
    return elapsed, peak


def rounds(server: SeaweedServer, bucket: str, dataset: Path, hashlist: Path, *,
           repeat: int, workers: int, hits: int) -> dict[str, list[float]]:
    """Seconds of each run and peak RSS of the scrub runs, ``repeat`` rounds alternating."""
    found: dict[str, list[float]] = {"bare": [], "s3": [], "local": [], "s3 rss": [],
                                     "local rss": []}
    local_out = CACHE / "s3-run" / "local"
    for _ in range(repeat):
        delete_prefix(server, bucket, "bare/")
        os.sync()
        elapsed, _, _ = timed([sys.executable, str(PEERS / "pyarrow_s3_copy.py"),
                               f"s3://{bucket}/laion", f"s3://{bucket}/bare",
                               "--workers", str(workers)])
        found["bare"].append(elapsed)
        for prefix in ("clean/", "clean.scrub/"):
            delete_prefix(server, bucket, prefix)
        elapsed, peak = scrub_apply(f"s3://{bucket}/laion", f"s3://{bucket}/clean", hashlist,
                                    workers, hits)
        found["s3"].append(elapsed)
        found["s3 rss"].append(peak)
        shutil.rmtree(local_out, ignore_errors=True)
        shutil.rmtree(local_out.with_name("local.scrub"), ignore_errors=True)
        elapsed, peak = scrub_apply(str(dataset), str(local_out), hashlist, workers, hits)
        found["local"].append(elapsed)
        found["local rss"].append(peak)
    written = {k.removeprefix("clean/"): v for k, v in server.objects(bucket, "clean/").items()}
    if written != local_tree(local_out):
        raise SystemExit("the S3 run's shards differ from the local run's")
    shutil.rmtree(CACHE / "s3-run", ignore_errors=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    dataset, hashlist = prepare(args.rows, args.shards, args.hits, args.entries)
    size = sum(p.stat().st_size for p in dataset.glob("*.parquet"))
    print(f"scrub apply on S3 (SeaweedFS on loopback): {args.rows:,} rows in {args.shards} "
          f"shards ({size / 2**20:,.0f} MiB), {args.entries:,}-entry md5 list with "
          f"{args.hits:,} hits, {args.workers} workers, median of {args.repeat}")
    server = SeaweedServer()
    try:
        os.environ.update(server.env())  # the runs' processes inherit them
        bucket = server.new_bucket("bench")
        server.upload_folder(dataset, bucket, "laion")
        found = rounds(server, bucket, dataset, hashlist, repeat=args.repeat,
                       workers=args.workers, hits=args.hits)
    finally:
        server.stop()
    report(found, args.rows)


def report(found: dict[str, list[float]], rows: int) -> None:
    median = {name: statistics.median(values) for name, values in found.items()}
    for name, label in (("bare", "bare copy (pyarrow S3)"), ("s3", "scrub apply S3 -> S3"),
                        ("local", "scrub apply local")):
        each = ", ".join(f"{t:.2f}" for t in found[name])
        print(f"  {label:<24} {median[name]:6.2f} s  {rows / median[name] / 1e6:5.2f} M rows/s"
              f"  ({each})")
    ratio = median["s3"] / median["bare"]
    verdict = "met" if ratio <= TIME_TARGET else "MISSED"
    print(f"  scrub S3 / bare copy: {ratio:.2f}x the time, {1 / ratio:.2f}x the throughput "
          f"(target <= {TIME_TARGET}x the time, >= 0.8x the throughput: {verdict})")
    s3_peak, local_peak = max(found["s3 rss"]), max(found["local rss"])
    growth = s3_peak / local_peak
    verdict = "met" if growth <= RSS_TARGET else "MISSED"
    print(f"  peak RSS: S3 run {s3_peak / 2**20:,.0f} MiB, local run {local_peak / 2**20:,.0f} "
          f"MiB: {growth - 1:+.1%} (target <= +{RSS_TARGET - 1:.0%}: {verdict})")
    print("  the S3 run wrote the local run's bytes")


if __name__ == "__main__":
    main()
