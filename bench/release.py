"""Benchmark: ``scrub release build`` of both Re-LAION variants against a polars peer.

Uses bench/apply.py's cached LAION-like dataset (10M rows in 20 shards) and 1M-entry md5 list
with 10k planted hits. The list goes into a fresh store; then, alternating for ``--repeat``
rounds, each as a fresh process timed from launch to exit, over the same number of workers:

- apply: ``scrub apply DATASET OUT --list bench-md5`` (one output, for reference);
- release: ``scrub release build DATASET OUT --policy research.toml --policy
  research-safe.toml --signing-key K`` (two variants in one pass, each with its manifest,
  signature, audit and removal list);
- polars peer (``bench/peers/polars_release.py``): polars reads each shard once and writes both
  variants (list matches and p_unsafe > 0.95 with a caption keyword; also p_unsafe > 0.45), shards
  in parallel. Target: the release <= 0.8x the peer's time. Each variant must keep the same rows
  as scrub's;
- floor: the same peer writing zstd level 1 without column statistics, the least a tool writing
  both variants as zstd parquet spends (its ratio to the peer shows how much room a target
  leaves beside the writes).

With ``--incremental``, instead: a dataset of ``--inc-rows`` rows in 100 shards, a full build,
then one new verified takedown request, then ``scrub release build --from`` the first build
against a full build of the same state, alternating for ``--repeat`` rounds (target: the
incremental rebuild <= 10% of the full build's time).

Usage: ``python bench/release.py [--rows 10000000] [--shards 20] [--repeat 3]
[--incremental [--inc-rows 5000000]]``
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

from bench.apply import CACHE, prepare  # noqa: E402
from bench.measure import default_workers, timed  # noqa: E402
from bench.peers.check import same_rows  # noqa: E402
from scrub.crypto import write_key_file, write_signing_keypair  # noqa: E402
from scrub.lists.store import ListStore  # noqa: E402

POLICIES = ROOT.parent / "policies"
PEER_TARGET = 0.8


def incremental(rows: int, repeat: int) -> None:
    from scrub.crypto import load_key
    from scrub.ledger.db import make_engine
    from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
    from scrub.synthetic import generate_dataset, read_column

    dataset = generate_dataset(CACHE / f"laion-{rows}-100", rows=rows, shards=100, seed=42,
                               embeddings=False)
    work = CACHE / "release-inc"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = write_key_file(work / "data.key")
    hashlist = CACHE / "inc-md5.txt"
    md5 = read_column(dataset, "md5")
    hashlist.write_text("\n".join(md5.gather(list(range(0, rows, rows // 1000))).to_list()))
    ListStore(work / "store").import_list(hashlist, name="bench-md5", source="bench",
                                          version="1", key=key)
    write_signing_keypair(work / "sign.pem", work / "sign.pub")
    os.environ["SCRUB_HOME"] = str(work / "home")
    timed([sys.executable, "-m", "scrub", "db", "upgrade"])
    common = ["--policy", str(POLICIES / "research.toml"), "--policy",
              str(POLICIES / "research-safe.toml"), "--signing-key", str(work / "sign.pem"),
              "--store", str(work / "store"), "--key-file", str(work / "data.key"),
              "--workers", str(default_workers()), "--no-ledger-update", "--quiet"]

    def release(out: str, *extra: str) -> float:
        shutil.rmtree(work / out, ignore_errors=True)
        os.sync()
        elapsed, _, _ = timed([sys.executable, "-m", "scrub", "release", "build", str(dataset),
                               str(work / out), *common, *extra])
        return elapsed

    first = release("base")
    ledger = Ledger(make_engine(None), seal=IdentitySeal(load_key(work / "data.key")))
    url = read_column(dataset, "URL")[rows // 2]
    request, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
        "requester": {"name": "Bench", "email": "bench@example.org"},
        "items": [{"type": "url", "value": url}]}, where="bench"), "bench")
    ledger.transition(request, "verify", "bench")
    fulls, incs = [], []
    for _ in range(repeat):
        fulls.append(release("full"))
        incs.append(release("inc", "--from", str(work / "base")))
    f, i = statistics.median(fulls), statistics.median(incs)
    print(f"{rows:,} rows in 100 shards, both variants, {default_workers()} workers, median of "
          f"{repeat} (first build {first:.1f} s)")
    print(f"  full build after one new request:   {f:6.1f} s  "
          f"({', '.join(f'{t:.1f}' for t in fulls)})")
    print(f"  incremental (--from the first):     {i:6.1f} s  "
          f"({', '.join(f'{t:.1f}' for t in incs)})")
    print(f"  ratio {i / f:.1%} of the full build (target <= 10%)")


def full(rows: int, shards: int, repeat: int) -> None:
    """Apply, release build and the polars peer, alternating; medians, ratio and row checks."""
    dataset, hashlist = prepare(rows, shards, 10_000, 1_000_000)
    work = CACHE / "release-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = write_key_file(work / "data.key")
    ListStore(work / "store").import_list(hashlist, name="bench-md5", source="bench",
                                          version="1", key=key)
    write_signing_keypair(work / "sign.pem", work / "sign.pub")
    workers = str(default_workers())
    os.environ["SCRUB_HOME"] = str(work / "home")
    common = ["--store", str(work / "store"), "--key-file", str(work / "data.key"),
              "--workers", workers, "--quiet", "--json"]
    release = ["release", "build", str(dataset), str(work / "release-out"), "--policy",
               str(POLICIES / "research.toml"), "--policy", str(POLICIES / "research-safe.toml"),
               "--signing-key", str(work / "sign.pem"), "--no-ledger-update", *common]
    def peer(name: str, *extra: str) -> list[str]:
        return [str(ROOT / "peers" / "polars_release.py"), str(dataset), str(hashlist),
                str(POLICIES / "keywords.txt"), str(work / f"{name}-out"), "--workers", workers,
                *extra]

    # the policies apply verified ledger requests: an empty, migrated ledger
    timed([sys.executable, "-m", "scrub", "db", "upgrade"])
    times: dict[str, list[float]] = {"apply": [], "release": [], "peer": [], "floor": []}
    for _ in range(repeat):
        for name, command in (("apply", ["-m", "scrub", "apply", str(dataset),
                                         str(work / "apply-out"), "--list", "bench-md5",
                                         *common]),
                              ("release", ["-m", "scrub", *release]), ("peer", peer("peer")),
                              ("floor", peer("floor", "--cheapest"))):
            shutil.rmtree(work / f"{name}-out", ignore_errors=True)
            os.sync()
            elapsed, peak, out = timed([sys.executable, *command])
            times[name].append(elapsed)
            if name == "apply":
                removed = json.loads(out)["rows_removed"]
            elif name == "release":
                summary, release_peak = json.loads(out), peak
    for variant in sorted(summary["variants"]):
        same_rows(work / "release-out" / variant, work / "peer-out" / variant,
                  name=f"polars peer ({variant})")
    print(f"{rows:,} rows, {shards} shards, {workers} workers, median of {repeat} "
          f"(apply removed {removed:,} rows)")
    _report(times, summary, release_peak)


def _report(times: dict[str, list[float]], summary: dict, peak: int) -> None:
    a, r, p = (statistics.median(times[n]) for n in ("apply", "release", "peer"))

    def each(name: str) -> str:
        return ", ".join(f"{t:.1f}" for t in times[name])

    print(f"  scrub apply (one output):             {a:6.1f} s  ({each('apply')})")
    print(f"  scrub release build (two variants):   {r:6.1f} s  ({each('release')}), "
          f"peak RSS {peak / 2**20:,.0f} MiB")
    for name, info in sorted(summary["variants"].items()):
        print(f"    {name}: {info['rows_out']:,} rows")
    print(f"  polars peer (read once, two variants): {p:5.1f} s  ({each('peer')}), "
          "same rows as scrub in each variant")
    f = statistics.median(times["floor"])
    print(f"  floor, the peer writing zstd 1 without statistics: {f:5.1f} s  ({each('floor')})")
    print(f"  ratio release / apply {r / a:.2f}x (for reference; no target)")
    verdict = "met" if r / p <= PEER_TARGET else "MISSED"
    print(f"  ratio both release variants / polars peer {r / p:.2f}x "
          f"(target <= {PEER_TARGET}x: {verdict})")
    below = " (the target lies below the floor)" if f / p > PEER_TARGET else ""
    print(f"  ratio floor / polars peer {f / p:.2f}x{below}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--inc-rows", type=int, default=5_000_000)
    args = parser.parse_args()
    if args.incremental:
        incremental(args.inc_rows, args.repeat)
    else:
        full(args.rows, args.shards, args.repeat)


if __name__ == "__main__":
    main()
