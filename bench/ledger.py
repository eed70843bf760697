"""Benchmark: the takedown ledger at scale, on SQLite.

1. Import: writes (and caches under ``bench/.cache``) a JSONL batch of 100k requests holding
   1M items of every type (URLs, prefixes, hosts, domains, md5/sha256/PDQ hashes, caption
   terms), with some repeat requesters naming items they asked for before, and times
   ``scrub requests import`` of it into a fresh SQLite ledger, as a user runs it (target: <= 60 s).
2. Verify: builds a 1M-event history in a fresh ledger through the ledger's own service (a
   tenth of the events create requests, one item each; the rest verify them and apply them in
   release after release, which is what an operator's history would hold after years of use)
   and times ``scrub ledger verify`` of it: the keyed chain, and every request and item
   re-derived from its events and compared (target: <= 30 s). Then edits one event in the
   middle and checks that verify names it.

Usage: ``python bench/ledger.py [--requests 100000] [--items 1000000] [--events 1000000]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

CACHE = ROOT / ".cache"
SCRUB = str(Path(sys.executable).with_name("scrub"))
TYPES = np.array(["url", "url", "url", "url", "md5", "md5", "sha256", "pdq", "url_prefix",
                  "host", "domain", "caption_term"])


def _hex(rng: np.random.Generator, count: int, nbytes: int) -> list[str]:
    return [bytes(row).hex() for row in rng.integers(0, 256, (count, nbytes), dtype=np.uint8)]


def request_batch(requests: int, items: int) -> Path:
    """A JSONL batch; about 2% of requests come again from the same person naming one of the
    items of their first request plus new ones (the ledger must join them, not duplicate)."""
    path = CACHE / f"requests-{requests}-{items}.jsonl"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    counts = rng.multinomial(items - requests, np.full(requests, 1 / requests)) + 1
    types = TYPES[rng.integers(0, len(TYPES), items)]
    md5, sha, pdq = _hex(rng, items, 16), _hex(rng, items, 32), _hex(rng, items, 32)
    sites = rng.integers(0, 2_000_000, items)
    words = np.array(["Jane", "John", "Doe", "Smith", "Maria", "Garcia", "Wei", "Zhang", "Ana",
                      "Silva", "Olu", "Adeyemi"])
    first, last = rng.integers(0, len(words), (2, items))
    emails = rng.integers(0, requests * 50, requests)
    repeat = rng.random(requests) < 0.02
    start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    seconds = np.sort(rng.integers(0, 80 * 86400, requests))
    tmp = path.with_suffix(".partial")
    position = 0
    previous: list[dict] = []
    with open(tmp, "w", encoding="utf-8") as handle:
        for r in range(requests):
            entries = []
            for j in range(position, position + counts[r]):
                kind, site = types[j], f"site{sites[j]}.org"
                value = {"url": f"https://www.{site}/photos/{j}.jpg?size=large",
                         "url_prefix": f"https://{site}/gallery/{j}/",
                         "host": f"cdn.{site}", "domain": site, "md5": md5[j],
                         "sha256": sha[j], "pdq": pdq[j],
                         "caption_term": f"{words[first[j]]} {words[last[j]]} {j}"}[kind]
                entries.append({"type": str(kind), "value": value})
            position += counts[r]
            email = f"person{emails[r]}@mail.example.net"
            if repeat[r] and previous:
                earlier = previous[int(rng.integers(0, len(previous)))]
                email = earlier["requester"]["email"]
                entries.append(earlier["items"][0])
            record = {"kind": ("gdpr_erasure", "copyright", "safety", "other")[r % 4],
                      "received_at": (start + dt.timedelta(seconds=int(seconds[r])))
                      .isoformat().replace("+00:00", "Z"),
                      "requester": {"name": f"Person {emails[r]}", "email": email},
                      "items": entries}
            if r % 97 == 0:
                previous.append(record)
            handle.write(json.dumps(record) + "\n")
    os.replace(tmp, path)
    return path


def fresh_ledger(work: Path) -> tuple[str, Path]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = work / "ledger.key"
    write_key_file(key)
    url = f"sqlite:///{work / 'ledger.db'}"
    subprocess.run([SCRUB, "db", "upgrade", "--db", url], check=True, capture_output=True)
    return url, key


def bench_import(requests: int, items: int, repeat: int) -> None:
    batch = request_batch(requests, items)
    times, peaks = [], []
    for _ in range(repeat):
        url, key = fresh_ledger(CACHE / "ledger-import")
        os.sync()
        elapsed, peak, out = timed([SCRUB, "requests", "import", str(batch), "--db", url,
                                    "--key-file", str(key), "--actor", "bench"])
        times.append(elapsed)
        peaks.append(peak)
    print(f"import: {requests:,} requests, {items:,} items: {out.strip()}")
    print(f"  median {statistics.median(times):.1f} s over {repeat} rounds "
          f"({', '.join(f'{t:.1f}' for t in times)}), "
          f"{items / statistics.median(times):,.0f} items/s, "
          f"peak RSS {max(peaks) / 2**20:,.0f} MiB  (target <= 60 s)")


def build_chain(url: str, key: Path, events: int) -> None:
    """A history of ``events`` events written through the ledger service: requests created
    (one item each), verified, then applied in release after release."""
    from scrub.crypto import load_key
    from scrub.ledger.db import make_engine
    from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec

    ledger = Ledger(make_engine(url), seal=IdentitySeal(load_key(key)))
    requests = max(1, events // 10)
    specs = RequestSpec.parse_many([
        ({"kind": "gdpr_erasure", "received_at": "2026-01-01T00:00:00Z",
          "requester": {"name": f"R {n}", "email": f"r{n}@example.org"},
          "items": [{"type": "md5", "value": f"{n:032x}"}]}, f"request {n}")
        for n in range(requests)])
    ids = [request_id for request_id, _ in ledger.add_many(specs, "bench")]
    written = len(ids)
    if written < events:
        batch = ids[:events - written]
        ledger.transition_many(batch, "verify", "bench")
        written += len(batch)
    release = 0
    while written < events:
        release += 1
        written += len(ledger.mark_applied(ids[:events - written], f"r{release}", "bench"))
    ledger.engine.dispose()


def bench_verify(events: int, repeat: int) -> None:
    url, key = fresh_ledger(CACHE / "ledger-verify")
    build_chain(url, key, events)
    os.sync()
    times = []
    for _ in range(repeat):
        elapsed, peak, out = timed([SCRUB, "ledger", "verify", "--db", url,
                                    "--key-file", str(key)])
        times.append(elapsed)
    print(f"verify: {events:,} events: {out.strip()}")
    print(f"  median {statistics.median(times):.1f} s over {repeat} rounds "
          f"({', '.join(f'{t:.1f}' for t in times)}), "
          f"{events / statistics.median(times):,.0f} events/s, peak RSS {peak / 2**20:,.0f} MiB "
          "(target <= 30 s)")
    import sqlite3

    middle = events // 2
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE events SET actor = 'mallory' WHERE seq = ?", (middle,))
    tampered = subprocess.run([SCRUB, "ledger", "verify", "--db", url, "--key-file", str(key)],
                              capture_output=True, text=True)
    found = f"event {middle}" in tampered.stderr + tampered.stdout
    print(f"  tampered event {middle}: exit {tampered.returncode}, named: {found}")
    if tampered.returncode == 0 or not found:
        raise SystemExit("verify missed the edited event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_import(args.requests, args.items, args.repeat)
    bench_verify(args.events, args.repeat)


if __name__ == "__main__":
    main()
