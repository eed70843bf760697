"""``scrub apply --ledger``: verified requests' items become rules with the request's kind as
the reason; requests not (or no longer) verified remove nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from scrub.ledger.service import Ledger, RequestSpec
from tests.helpers import expect_ok, run_cli


def request(url: str, email: str, kind: str = "gdpr_erasure") -> RequestSpec:
    return RequestSpec.parse({"kind": kind, "received_at": "2026-11-01T10:00:00Z",
                              "requester": {"name": "N", "email": email},
                              "items": [{"type": "url", "value": url}]}, where="r")


def test_verified_requests_remove_their_rows(sample_dataset: Path, tmp_path: Path,
                                             ledger: Ledger, database: tuple[str, dict],
                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url, options = database
    if options:  # PostgreSQL in its own schema: the CLI reaches it through search_path
        url = f"{url}?options=-csearch_path%3D{options['schema']}"
    first = pl.read_parquet(sorted(sample_dataset.glob("*.parquet"))[0])
    urls = first["URL"].to_list()
    verified, _ = ledger.add(request(urls[3], "a@x.org"), "alice")
    copyright_id, _ = ledger.add(request(urls[5], "b@x.org", "copyright"), "alice")
    pending, _ = ledger.add(request(urls[7], "c@x.org"), "alice")
    withdrawn, _ = ledger.add(request(urls[9], "d@x.org"), "alice")
    ledger.transition(verified, "verify", "alice")
    ledger.transition(copyright_id, "verify", "alice")
    ledger.transition(withdrawn, "withdraw", "alice")
    out = tmp_path / "out"
    result = run_cli("apply", str(sample_dataset), str(out), "--ledger", "--db", url,
                     "--key-file", str(tmp_path / "ledger.key"),
                     "--workers", "1", "--quiet", "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["removed_by_reason"] == {"gdpr_erasure": urls.count(urls[3]),
                                           "copyright": urls.count(urls[5])}
    kept = pl.read_parquet(out / sorted(p.name for p in sample_dataset.glob("*.parquet"))[0])
    assert urls[3] not in kept["URL"].to_list() and urls[5] not in kept["URL"].to_list()
    assert urls[7] in kept["URL"].to_list() and urls[9] in kept["URL"].to_list()
    assert "N" not in result.stdout.split() and "a@x.org" not in result.stdout
