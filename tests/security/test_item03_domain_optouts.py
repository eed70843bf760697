"""Item 3: a domain opt-out ``D`` removes every row whose canonical host is ``D`` or ends with
``.D``, whatever D's place in the public suffix list (``amazonaws.com``, ``blogspot.com``,
``cloudfront.net`` are private suffixes, and name what they say); only an ICANN public suffix
itself (``com``, ``co.uk``) is refused, naming the file, the line and why. Ledger domain
requests, domain allow-lists and the release probe sets of incremental rebuilds follow the
same rule."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tldextract
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrub.dataset import detect_roles
from scrub.engine.kernel import decide
from scrub.engine.plan import MatchPlan, _rule, add_ledger_rules, plan_from_hashlists
from scrub.engine.reasons import Reason
from scrub.engine.rules import Source
from scrub.ledger.service import LedgerError, RequestSpec
from scrub.lists.hashlist import read_hashlist
from scrub.lists.types import Domain
from scrub.synthetic import generate_dataset, read_column
from scrub.urls import url_host
from tests.helpers import expect_exit, expect_ok, run_cli

ICANN_ONLY = tldextract.TLDExtract(suffix_list_urls=(), include_psl_private_domains=False,
                                   cache_dir=None)
PRIVATE = ["amazonaws.com", "blogspot.com", "cloudfront.net"]


def under(host: str | None, domain: str) -> bool:
    """The rule, spelled out: the host is the domain or ends with "." + the domain."""
    return host is not None and (host == domain or host.endswith("." + domain))


@pytest.fixture(scope="module")
def private_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated dataset with rows on and under private public-suffix domains, as an
    img2dataset crawl has them (S3 buckets, CloudFront distributions, Blogspot blogs), plus
    look-alikes that are not under them."""
    root = tmp_path_factory.mktemp("item03")
    data = generate_dataset(root / "data", rows=2_000, shards=2, seed=3, embeddings=False)
    hosts = ["s3.amazonaws.com", "my-bucket.s3.amazonaws.com", "S3.EU-WEST-1.AmazonAWS.com",
             "d1a2b3.cloudfront.net", "alice.blogspot.com", "bob.blogspot.com.",
             "notamazonaws.com", "amazonaws.com.evil.example", "xcloudfront.net",
             "blogspot.co.uk", "cloudfront.net"]
    for index, shard in enumerate(sorted(data.glob("*.parquet"))):
        table = pq.read_table(shard)
        urls = table.column("URL").to_pylist()
        for i in range(0, len(urls), 7):
            urls[i] = f"https://{hosts[(i // 7 + index) % len(hosts)]}/img/{index}-{i}.jpg"
        pq.write_table(table.set_column(table.schema.get_field_index("URL"), "URL",
                                        pa.array(urls, pa.string())), shard)
    return data


def test_private_suffix_domains_remove_every_row_on_or_under_them(private_dataset: Path,
                                                                   tmp_path: Path) -> None:
    listing = tmp_path / "domains.csv"
    listing.write_text("type,value\ndomain,AmazonAWS.com.\ndomain, blogspot.com\n"
                       "domain,CLOUDFRONT.NET\n")
    result = run_cli("apply", str(private_dataset), str(tmp_path / "out"),
                     "--hashlist", str(listing), "--workers", "1", "-q")
    expect_ok(result)
    urls = read_column(private_dataset, "URL").to_list()
    kept = set(pl.read_parquet(sorted((tmp_path / "out").glob("*.parquet")))["key"].to_list())
    keys = read_column(private_dataset, "key").to_list()
    removed = {k for k in keys if k not in kept}
    for domain in PRIVATE:
        expected = {k for k, u in zip(keys, urls, strict=False) if under(url_host(u), domain)}
        assert expected and expected <= removed, domain
    expected = {k for k, u in zip(keys, urls, strict=True)
                if any(under(url_host(u), d) for d in PRIVATE)}
    assert removed == expected
    # the look-alikes stay
    left = pl.read_parquet(sorted((tmp_path / "out").glob("*.parquet")))["URL"].to_list()
    assert {url_host(u) for u in left} >= {"notamazonaws.com", "amazonaws.com.evil.example",
                                           "xcloudfront.net", "blogspot.co.uk"}


#: ICANN public suffixes as operators might write them: case, a trailing dot, spaces, a
#: wildcard rule's child (*.ck), an exception's sibling (*.kawasaki.jp), IDN in punycode and
#: in Unicode, a second-level registry suffix.
ICANN = ["com", "CO.UK", "co.uk.", " com.au ", "foo.ck", "x.kawasaki.jp", "xn--p1ai",
         "\u0440\u0444", "ORG.", "gov.uk"]


@pytest.mark.parametrize("value", ICANN)
def test_icann_public_suffixes_are_refused_naming_file_line_and_why(
        private_dataset: Path, tmp_path: Path, value: str) -> None:
    listing = tmp_path / "domains.csv"
    listing.write_text(f"type,value\ndomain,example.org\ndomain,{value}\n", encoding="utf-8")
    result = run_cli("apply", str(private_dataset), str(tmp_path / "out"),
                     "--hashlist", str(listing), "-q")
    expect_exit(result, 2)
    assert f"{listing}:3:" in result.output
    assert "ICANN" in result.output and "every site under it" in result.output
    assert value.strip() not in result.output.replace(str(listing), "")
    assert not (tmp_path / "out").exists()


def test_a_ledger_domain_item_that_is_an_icann_suffix_is_refused_with_why() -> None:
    record = {"kind": "copyright", "received_at": "2026-12-01T10:00:00Z",
              "requester": {"name": "Cy", "email": "cy@example.org"},
              "items": [{"type": "domain", "value": "amazonaws.com"},
                        {"type": "domain", "value": "CO.UK."}]}
    with pytest.raises(LedgerError) as info:
        RequestSpec.parse(record, where="r.json")
    assert "r.json: items[1]" in str(info.value) and "ICANN" in str(info.value)
    record["items"] = record["items"][:1] + [{"type": "domain", "value": "blogspot.com"}]
    spec = RequestSpec.parse(record, where="r.json")
    assert [value for _, value in spec.items] == ["amazonaws.com", "blogspot.com"]


LABELS = ["amazonaws", "s3", "com", "blogspot", "co", "uk", "cloudfront", "net", "a", "www",
          "b-c", "xn--bcher-kva", "example", "xexample", "ck", "foo", "github", "io", "1", "0x1f"]


@st.composite
def hosts_and_domains(draw):  # type: ignore[no-untyped-def]
    hosts = draw(st.lists(st.lists(st.sampled_from(LABELS), min_size=1, max_size=5)
                          .map(".".join), min_size=1, max_size=25))
    suffixes = [".".join(h.split(".")[i:]) for h in hosts for i in range(len(h.split(".")))]
    domains = draw(st.lists(st.sampled_from(suffixes + PRIVATE + ["example.com", "com"]),
                            min_size=1, max_size=6))
    spellings = draw(st.lists(st.sampled_from(["{}", "{}.", "{}:8080", "user@{}"]),
                              min_size=len(hosts), max_size=len(hosts)))
    upper = draw(st.lists(st.booleans(), min_size=len(hosts), max_size=len(hosts)))
    return hosts, domains, spellings, upper


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=hosts_and_domains())
def test_domain_rules_match_exactly_the_host_or_its_subdomains(case) -> None:  # type: ignore
    """Property: over random hosts (private suffixes, look-alikes, IDN, numeric labels, odd
    spellings) a domain rule drops exactly the rows whose canonical host is D or ends with
    ".D", for every D the domain type accepts."""
    hosts, domains, spellings, upper = case
    urls = [f"https://{s.format(h.upper() if up else h)}/p/{i}.jpg"
            for i, (h, s, up) in enumerate(zip(hosts, spellings, upper, strict=False))]
    urls += ["not a url", "https:///nohost.jpg"]
    canonical = pl.Series(domains, dtype=pl.String)
    keys, valid = Domain.normalize_column(canonical)
    accepted = [d for d, ok in zip(domains, valid, strict=False) if ok]
    source = Source(id=0, label="domains", kind="list", digest="")
    plan = MatchPlan(sources=[source], rules=[_rule("domain", keys[valid], source, None)])
    table = pa.table({"URL": pa.array(urls, pa.string())})
    got = decide(plan, table, detect_roles(table.schema)).drop
    expected = [any(under(url_host(u), Domain.normalize(d)) for d in accepted) for u in urls]
    assert got.tolist() == expected
    # the domain type refuses exactly the ICANN suffixes (per tldextract's own reading of the
    # list's ICANN section), single labels and names a WHATWG parser reads as IPv4
    for d, ok in zip(domains, valid, strict=False):
        refused = ("." not in d or re.fullmatch(r"[0-9]+|0x[0-9a-f]*", d.rsplit(".", 1)[1])
                   or ICANN_ONLY(d).suffix == d)
        assert bool(ok) == (not refused), d


def test_ledger_domain_requests_attribute_rows_under_private_suffixes(
        private_dataset: Path) -> None:
    table = pq.read_table(sorted(private_dataset.glob("*.parquet"))[0])
    items = [(1, "copyright", "domain", "amazonaws.com"),
             (2, "gdpr_erasure", "domain", "s3.amazonaws.com"),
             (3, "safety", "domain", "blogspot.com"),
             (4, "other", "domain", "example.org")]
    plan = MatchPlan()
    add_ledger_rules(plan, items, watermark=(1, "0" * 64))
    decisions = decide(plan, table, detect_roles(table.schema))
    hosts = [url_host(u) for u in table.column("URL").to_pylist()]
    request_of = {s.id: int(s.label.split()[1]) for s in plan.sources}
    got = {request_of[s]: mask for s, mask in decisions.sources.items()}
    for request, domain in ((1, "amazonaws.com"), (2, "s3.amazonaws.com"),
                            (3, "blogspot.com")):
        expected = np.array([under(h, domain) for h in hosts])
        assert expected.any() and np.array_equal(got[request], expected), request
    assert 4 not in got
    copyright_bit = np.uint32(Reason.COPYRIGHT.mask)
    assert ((decisions.reasons[got[1]] & copyright_bit) != 0).all()


def test_a_domain_allow_list_clears_matches_on_and_under_its_domains(
        private_dataset: Path, tmp_path: Path) -> None:
    block = tmp_path / "block.csv"
    block.write_text("type,value\ndomain,amazonaws.com\n")
    allow = tmp_path / "allow.csv"
    allow.write_text("type,value\ndomain,s3.amazonaws.com\n")
    plan = plan_from_hashlists([read_hashlist(block)], names=["block"],
                               allow=[(read_hashlist(allow), ["block"])])
    table = pq.read_table(sorted(private_dataset.glob("*.parquet"))[0])
    hosts = [url_host(u) for u in table.column("URL").to_pylist()]
    drop = decide(plan, table, detect_roles(table.schema)).drop
    expected = [under(h, "amazonaws.com") and not under(h, "s3.amazonaws.com") for h in hosts]
    assert any(expected) and drop.tolist() == expected


def _incremental_release_with_a_new_domain_list(tmp_path: Path, before_base=None, after_base=None
                                                ) -> None:  # type: ignore[no-untyped-def]
    """A base release of 3 shards (shard 0 without any amazonaws.com host, shards 1 and 2
    with rows on bucket hosts under private suffixes) records host probe sets (a URL list
    makes the hosts worked out); then a list naming ``amazonaws.com`` is added and a --from
    rebuild must equal a full one, reusing shard 0 only."""
    from scrub.crypto import write_signing_keypair
    from scrub.lists.store import ListStore

    data = generate_dataset(tmp_path / "data", rows=1_500, shards=3, seed=5, embeddings=False)
    shards = sorted(data.glob("*.parquet"))
    for index, shard in enumerate(shards):
        table = pq.read_table(shard)
        urls = [u.replace("s3.amazonaws.com", "s3.example-cdn.net")
                for u in table.column("URL").to_pylist()]
        if index:
            urls[3] = f"https://photos-{index}.s3.amazonaws.com/a/{index}.jpg"
            urls[9] = f"https://x.s3.eu-west-{index}.amazonaws.com/b.jpg"
        pq.write_table(table.set_column(table.schema.get_field_index("URL"), "URL",
                                        pa.array(urls, pa.string())), shard)
    store = ListStore(tmp_path / "store")
    first = tmp_path / "urls.csv"
    first.write_text("type,value\nurl,https://nowhere.example/a.jpg\n")
    store.import_list(first, name="optout", source="registry", version="1")
    policy = tmp_path / "open.toml"
    policy.write_text('[policy]\nname = "open"\n[lists]\nnames = ["*"]\n')
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")

    def build(out: str, *extra: str):  # type: ignore[no-untyped-def]
        return run_cli("release", "build", str(data), str(tmp_path / out),
                       "--policy", str(policy), "--signing-key",
                       str(tmp_path / "sign.pem"), "--store", str(store.root),
                       "--workers", "1", "--quiet", "--json",
                       "--release-id", "r", *extra)

    if before_base is not None:
        before_base()
    base = build("base")
    if after_base is not None:
        after_base()
    expect_ok(base)
    assert len(list((tmp_path / "base" / ".scrub-probe").glob("*.probe"))) == 3
    domains = tmp_path / "domains.csv"
    domains.write_text("type,value\ndomain,amazonaws.com\n")
    store.import_list(domains, name="domains", source="registry", version="1")
    incremental = build("inc", "--from", str(tmp_path / "base"))
    expect_ok(incremental)
    full = build("full")
    expect_ok(full)
    for index, shard in enumerate(shards):
        inc, whole = (tmp_path / d / "open" / shard.name for d in ("inc", "full"))
        assert inc.read_bytes() == whole.read_bytes(), shard.name
        left = pl.read_parquet(inc)["URL"].to_list()
        assert not any(under(url_host(u), "amazonaws.com") for u in left)
        before = tmp_path / "base" / "open" / shard.name
        assert (inc.stat().st_ino == before.stat().st_ino) == (index == 0), shard.name


def test_an_incremental_rebuild_reads_every_shard_with_rows_under_a_new_domain(
        tmp_path: Path) -> None:
    _incremental_release_with_a_new_domain_list(tmp_path)


def test_host_probe_sets_of_a_release_made_before_parent_domains_are_not_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base release whose host probe sets hold only hosts and registrable domains (as
    releases made before this change have them, with the untagged layout) must not let a
    rebuild skip the shards with rows under the new domain: their tags no longer check."""
    import scrub.release.probe as probe
    import scrub.release.shard as build_module
    from scrub.urls import registrable_domains

    def old_host_probes(hosts: pl.Series, key: str) -> np.ndarray:
        hosts = hosts.drop_nulls().unique()
        values = pl.concat([hosts, registrable_domains(hosts).drop_nulls()]).unique()
        digests, valid = probe.text_digest_keys(values)
        return probe._keyed(digests[valid], key)

    with monkeypatch.context() as old:
        def plant() -> None:
            old.setattr(build_module, "host_probes", old_host_probes)
            old.setitem(probe._LAYOUT, probe.HOSTS, ("<u8", b""))

        _incremental_release_with_a_new_domain_list(tmp_path, plant, old.undo)
