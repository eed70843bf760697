"""Benchmark: ``scrub serve`` on a large ledger (issue 25 names no target; figures for the note).

Fills a SQLite ledger with ``--requests`` requests (3 items each, bulk ``add_many``, as
``scrub requests import`` does), then times with Starlette's test client (in process, no
network): the console's first page (overdue first, 100 rows, of all requests), one request's
page (items opened, history checked on its own), a filtered list, the public status lookup, and
filing a request through the intake form (sealing, one transaction, receipt). Medians of
``--repeat`` runs. The baseline is ``scrub requests ls`` over the same ledger (the CLI's list
of every request), measured in the same run, as a ratio.

Usage: ``python bench/web.py [--requests 100000] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from starlette.testclient import TestClient  # noqa: E402

from scrub.crypto import write_key_file  # noqa: E402
from scrub.ledger import db  # noqa: E402
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec  # noqa: E402
from scrub.ledger.staff import Staff  # noqa: E402
from scrub.web.app import create_app  # noqa: E402
from scrub.web.config import Limits, ServeConfig  # noqa: E402


def fill(ledger: Ledger, count: int) -> None:
    start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    for first in range(0, count, 20_000):
        specs = [RequestSpec("gdpr_erasure", start + dt.timedelta(minutes=i), f"Person {i}",
                             f"p{i}@example.org",
                             [("url", f"https://img.example.com/{i}/a.jpg"),
                              ("caption_term", f"person {i}"),
                              ("md5", f"{i:032x}")])
                 for i in range(first, min(count, first + 20_000))]
        ledger.add_many(specs, "bench")


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if found is None:
        raise SystemExit("no form token on the page")
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scrub-bench-web-"))
    engine = db.make_engine(str(work / "ledger.db"))
    db.upgrade(engine)
    ledger = Ledger(engine, seal=IdentitySeal(write_key_file(work / "ledger.key")))
    began = time.perf_counter()
    fill(ledger, args.requests)
    print(f"ledger: {args.requests:,} requests filled in {time.perf_counter() - began:.1f} s")
    Staff(ledger).add_user("bench", "admin", "a long bench passphrase", "bench")
    limits = Limits(intake_per_hour=10**6, status_per_10_minutes=10**6)
    client = TestClient(create_app(ServeConfig(ledger, limits)))
    client.post("/login", data={"csrf": csrf(client.get("/login").text), "name": "bench",
                                "password": "a long bench passphrase"})
    token = csrf(client.get("/console").text)
    middle = args.requests // 2
    counter = iter(range(10**9))
    figures = {
        "console first page": median_ms(lambda: client.get("/console"), args.repeat),
        "console filtered": median_ms(lambda: client.get("/console?status=received&kind="
                                                         "gdpr_erasure&page=50"), args.repeat),
        "request page": median_ms(lambda: client.get(f"/console/requests/{middle}"),
                                  args.repeat),
        "status lookup": median_ms(lambda: client.post("/status", data={
            "csrf": token, "code": "AAAA-AAAA-AAAA-AAAA-AAAA", "email": "x@example.org"}),
            args.repeat),
        "intake filing": median_ms(lambda: client.post("/request", data={
            "csrf": token, "name": "Bench", "email": f"b{next(counter)}@example.org",
            "kind": "other", "urls": "https://img.example.com/new.jpg", "statement": "",
            "consent": "yes"}), args.repeat),
    }
    baseline = median_ms(lambda: ledger.list(), max(3, args.repeat // 2))
    for name, ms in figures.items():
        print(f"{name:>20}: {ms:8.1f} ms median")
    print(f"{'requests ls (all)':>20}: {baseline:8.1f} ms median (the CLI's list, baseline)")
    print(f"console first page / requests ls: {figures['console first page'] / baseline:.3f}x")


if __name__ == "__main__":
    main()
