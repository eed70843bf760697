"""Opt-out rules (exact canonical URL, prefix, host, domain) against the reference canonicaliser.

Expected rows are computed one URL at a time with ``scrub.urls``' plain reference functions; the
engine computes them with the vectorised path. Both must agree exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scrub.apply import apply
from scrub.engine.plan import plan_from_hashlists
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import read_column
from scrub.urls import canonical_url, registrable_domain, url_host


@pytest.fixture(scope="module")
def urls(sample_dataset: Path) -> list[str]:
    return read_column(sample_dataset, "URL").to_list()


def removed_rows(dataset: Path, output: Path, lists: list[Path]) -> tuple[set[str], dict]:
    result = apply(lambda: plan_from_hashlists([read_hashlist(p) for p in lists]), dataset,
                   output, workers=1, progress=False)
    kept = set(pl.read_parquet(sorted(output.glob("*.parquet")))["URL"].to_list())
    everything = set(read_column(dataset, "URL").to_list())
    return everything - kept, result.report


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("type,value\n" + "".join(f'{t},"{v}"\n' for t, v in rows),
                    encoding="utf-8")
    return path


def respell(url: str) -> str:
    """An equivalent spelling: upper-case scheme and host, default port, a fragment."""
    scheme, rest = url.split("://", 1)
    host, sep, tail = rest.partition("/")
    port = ":443" if scheme == "https" and ":" not in host else ""
    return f"{scheme.upper()}://{host.upper()}{port}{sep}{tail}#frag"


@pytest.mark.slow
def test_exact_urls_match_in_any_equivalent_spelling(sample_dataset: Path, tmp_path: Path,
                                                     urls: list[str]) -> None:
    picked = urls[100:130]
    ascii_only = [u for u in picked if url_host(u) and url_host(u).isascii()]
    listed = write_csv(tmp_path / "urls.csv", [("url", respell(u)) for u in ascii_only])
    removed, report = removed_rows(sample_dataset, tmp_path / "out", [listed])
    expected = {u for u in urls if canonical_url(u) in {canonical_url(x) for x in ascii_only}}
    assert removed == expected and len(expected) >= len(ascii_only)
    assert report["removed_by_reason"] == {"optout_url": len(expected)}


@pytest.mark.slow
def test_hosts_match_exactly_that_host(sample_dataset: Path, tmp_path: Path,
                                       urls: list[str]) -> None:
    hosts = pl.Series([url_host(u) for u in urls]).value_counts().sort("count")
    chosen = hosts.filter(pl.col("count").is_between(3, 40)).to_series(0).head(3).to_list()
    listed = write_csv(tmp_path / "hosts.csv", [("host", h.upper()) for h in chosen])
    removed, report = removed_rows(sample_dataset, tmp_path / "out", [listed])
    expected = {u for u in urls if url_host(u) in set(chosen)}
    assert removed == expected and expected
    assert report["removed_by_reason"] == {"optout_host": len(expected)}


def test_domains_match_the_domain_and_its_subdomains(sample_dataset: Path, tmp_path: Path,
                                                     urls: list[str]) -> None:
    domains = pl.Series([registrable_domain(url_host(u)) for u in urls])
    counts = domains.value_counts().sort("count")
    chosen = counts.filter(pl.col("count").is_between(5, 200)).to_series(0).head(4).to_list()
    listed = write_csv(tmp_path / "domains.csv", [("domain", d) for d in chosen])
    removed, _ = removed_rows(sample_dataset, tmp_path / "out", [listed])
    expected = {u for u, d in zip(urls, domains.to_list(), strict=False) if d in set(chosen)}
    assert removed == expected and expected


@pytest.mark.slow
def test_prefixes_match_on_the_canonical_url(sample_dataset: Path, tmp_path: Path,
                                             urls: list[str]) -> None:
    host = "i.pinimg.com"
    prefixes = [f"HTTPS://{host.upper()}/IMG/", f"https://{host}/IMG/thumbs/",  # covered by 1st
                f"https://{host}/originals/u", "https://nowhere.example/"]
    listed = write_csv(tmp_path / "prefixes.csv", [("url_prefix", p) for p in prefixes])
    removed, report = removed_rows(sample_dataset, tmp_path / "out", [listed])
    canon = [canonical_url(p) for p in prefixes]
    expected = {u for u in urls if (c := canonical_url(u)) and any(c.startswith(p) for p in canon)}
    assert removed == expected and expected
    assert report["removed_by_reason"] == {"optout_prefix": len(expected)}


def test_url_digests_match_the_stored_and_the_canonical_url(sample_dataset: Path,
                                                            tmp_path: Path,
                                                            urls: list[str]) -> None:
    stored, respelled = urls[10], urls[20]
    digests = [hashlib.md5(stored.encode()).hexdigest(),
               hashlib.md5(canonical_url(respelled).encode()).hexdigest()]
    listed = tmp_path / "d.txt"
    listed.write_text("\n".join(digests) + "\n")
    result = apply(lambda: plan_from_hashlists([read_hashlist(listed, type_name="url_md5")]),
                   sample_dataset, tmp_path / "out", workers=1, progress=False)
    kept = set(pl.read_parquet(sorted((tmp_path / "out").glob("*.parquet")))["URL"].to_list())
    assert stored not in kept and respelled not in kept
    assert result.report["rows_removed"] == 2


def test_vectorised_canonicalisation_agrees_with_the_reference(urls: list[str]) -> None:
    from scrub.urls import canonicalize_urls

    got = canonicalize_urls(pl.Series(urls)).to_list()
    assert got == [canonical_url(u) for u in urls]
    assert np.mean([g is not None for g in got]) == 1.0
