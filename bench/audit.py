"""Benchmark: the audit page of a 6,000-shard release in headless Chromium (issue 24: under 2 s).

Builds a synthetic audit dict (``--shards`` shards, a few reasons, lists and requests, a
previous release), renders it with scrub's template, then loads it ``--repeat`` times in
Debian's Chromium (``--dump-dom``), each a fresh process. Reports the median of: the page's
own load time (navigation start to the end of the load event, its inline script included,
read from a copy of the page that records it), and the whole process from launch to exit.

Usage: ``python bench/audit.py [--shards 6000] [--repeat 5] [--chromium /usr/bin/chromium]``
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from scrub.release.audit_html import render_html  # noqa: E402

REASONS = ("content_hash", "optout_url", "optout_domain", "gdpr_erasure", "nsfw")
PROBE = ("<script>addEventListener('load', function () { setTimeout(function () {"
         "var t = performance.getEntriesByType('navigation')[0];"
         "var m = document.createElement('meta'); m.name = 'bench-load-ms';"
         "m.content = String(t.loadEventEnd); document.head.appendChild(m); }, 0); });"
         "</script></body>")


def synthetic_audit(shards: int) -> dict:
    """An audit of this format for a release of ``shards`` shards of 1M rows each."""
    per_shard, by_reason = [], dict.fromkeys(REASONS, 0)
    for i in range(shards):
        reasons = {r: (i * (k + 7)) % (50 + 40 * k) for k, r in enumerate(REASONS)}
        removed = sum(reasons.values())
        for r, n in reasons.items():
            by_reason[r] += n
        per_shard.append({"shard": f"part-{i:05d}.parquet", "rows_in": 1_000_000,
                          "rows_out": 1_000_000 - removed, "removed": removed})
    rows_in = 1_000_000 * shards
    removed = sum(s["removed"] for s in per_shard)
    policy = {"name": "research-safe", "sha256": "0" * 64, "lists": ["*"], "ledger": True,
              "score": "stored", "thresholds": [{"above": 0.45, "keywords": False}],
              "keywords": 12, "description": "bench", "rules": ["Remove a row ..."]}
    return {
        "format": "scrub-audit/2", "scrub_version": "bench", "release_id": "bench",
        "variant": "research-safe", "dataset": "laion-5b", "created_at": "2026-12-05",
        "finished_at": "2026-12-05T00:00:00+00:00", "duration_seconds": 3600.0,
        "signed_by": "f" * 64, "policy": policy,
        "lists": [{"name": f"list-{i}", "version": "1", "label": f"list-{i}@1",
                   "sha256": "a" * 64, "sensitive": i % 2 == 0, "entries": 1_000_000,
                   "rows_removed": 1000 * i, "unmatched_entries": 10 * i,
                   "unmatched_named": [], "unmatched_not_named": 10 * i} for i in range(5)],
        "ledger": {"events": 12_345, "head": "b" * 64,
                   "requests": [{"id": i, "kind": "gdpr_erasure"} for i in range(200)]},
        "rows_in": rows_in, "rows_out": rows_in - removed, "removed": removed,
        "removed_by_reason": by_reason, "rows_with_several_reasons": removed // 50,
        "reason_combinations": {r: n for r, n in by_reason.items()},
        "removed_by_source": {f"list-{i}@1": 1000 * i for i in range(5)},
        "sensitive_sources": ["list-0@1"], "per_shard": per_shard,
        "previous": {"release_id": "bench-0", "variant": "research-safe",
                     "rows_in": rows_in, "rows_out": rows_in, "removed": 0,
                     "totals": {"removed": {"before": 0, "now": removed}},
                     "removed_by_reason": dict.fromkeys(REASONS, 0)},
        "missing": {},
    }


def load_once(chromium: str, page: Path) -> tuple[float, float]:
    """(the page's load time, the process's wall time), in seconds."""
    start = time.perf_counter()
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", "--disable-background-networking",
                             "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120, check=True)
    wall = time.perf_counter() - start
    found = re.search(r'name="bench-load-ms" content="([0-9.]+)"', result.stdout)
    if found is None:
        raise SystemExit("the page did not record its load time")
    return float(found.group(1)) / 1000, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=6_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    audit = synthetic_audit(args.shards)
    start = time.perf_counter()
    page = render_html(audit)
    rendering = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "audit.html"
        probe.write_text(page.replace("</body>", PROBE, 1))
        runs = [load_once(args.chromium, probe) for _ in range(args.repeat)]
    loads, walls = [r[0] for r in runs], [r[1] for r in runs]
    print(f"audit of {args.shards:,} shards: {len(page) / 1e6:.1f} MB of HTML, rendered "
          f"in {rendering:.2f} s")
    print(f"chromium page load (navigation to load end, script included), median of "
          f"{args.repeat}: {statistics.median(loads):.2f} s (target < 2 s)")
    print(f"chromium process, launch to exit, median: {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
