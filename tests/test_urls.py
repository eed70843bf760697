"""URL canonicalisation: properties of the reference, and the vectorised path against it."""

from __future__ import annotations

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scrub.urls import canonical_url, canonicalize_urls, registrable_domain, url_host

SEGMENT = st.text(alphabet=st.sampled_from(list("abcXYZ019-._~%/!$&'()*+,;=:@ é写")),
                  max_size=12)
HOST = st.sampled_from(["example.com", "EXAMPLE.com", "a.b.co.uk", "bücher.de", "127.0.0.1",
                        "[::1]", "[::1", "[::1]x", "xn--bcher-kva.de", "host.", "host..",
                        "sub.blogspot.com", "", "."])
URLS = st.builds(
    lambda scheme, user, host, port, path, query, frag: (
        f"{scheme}://{user}{host}{port}{path}{query}{frag}"),
    st.sampled_from(["http", "https", "HTTP", "ftp", "HtTpS", "git+ssh", "1http"]),
    st.sampled_from(["", "", "", "user@", "u:p@", "a@b@", "@"]), HOST,
    st.sampled_from(["", ":80", ":443", ":8080", ":", ":0080", ":8o", ":99999"]),
    st.lists(SEGMENT, max_size=4).map(lambda parts: "".join("/" + p for p in parts)),
    st.one_of(st.just(""), st.just("?"), SEGMENT.map(lambda q: "?" + q.replace("/", "="))),
    st.sampled_from(["", "#", "#frag"]),
)
ANY_TEXT = st.one_of(URLS, st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(URLS)
def test_canonicalisation_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    if once is not None:
        assert canonical_url(once) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_vectorised_equals_reference(values: list[str]) -> None:
    assert canonicalize_urls(pl.Series(values, dtype=pl.String)).to_list() == \
        [canonical_url(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["example.com", "a.b.co.uk"]), st.lists(SEGMENT, max_size=3))
def test_equivalent_spellings_give_one_form(host: str, parts: list[str]) -> None:
    path = "".join("/" + p.replace("%", "").replace(" ", "_") for p in parts)
    base = canonical_url(f"https://{host}{path}")
    spellings = [
        f"HTTPS://{host.upper()}{path}",
        f"https://{host}:443{path}",
        f"https://{host}.{path}",
        f"https://{host}{path}#fragment",
        f"https://{host}{path}?",
        f"  https://{host}{path}\t",
        f"https://{host}/./x/..{path}",
        "https://{}{}".format(host, "".join(f"%{ord(c):02x}" if c.isalnum() and c.isascii()
                                            else c for c in path)),
    ]
    for spelling in spellings:
        assert canonical_url(spelling) == base, spelling


def test_known_forms() -> None:
    assert canonical_url("HTTP://Example.COM:80/a/./b/../c/%7euser/%2f?q=%41#x") == \
        "http://example.com/a/c/~user/%2F?q=A"
    assert canonical_url("https://bücher.de/写真") == \
        "https://xn--bcher-kva.de/%E5%86%99%E7%9C%9F"
    assert canonical_url("http://u@h.com:8080") == "http://u@h.com:8080/"
    for bad in ["", "example.com/x", "data:image/png;base64,AAAA", "http://a\x00b/", "https:///"]:
        assert canonical_url(bad) is None


def test_different_urls_stay_different() -> None:
    distinct = ["https://a.com/x", "http://a.com/x", "https://a.com/X", "https://a.com/x?b=1&a=2",
                "https://a.com/x?a=2&b=1", "https://a.com:8443/x", "https://b.a.com/x",
                "https://a.com/x%2Fy", "https://a.com/x/y", "https://a.com/x/", "https://a.com/%20",
                "https://a.com/+"]
    canon = [canonical_url(u) for u in distinct]
    assert len(set(canon)) == len(distinct)


def test_hosts_and_registrable_domains() -> None:
    assert url_host("https://Images.Example.co.uk:8080/x") == "images.example.co.uk"
    assert registrable_domain("images.example.co.uk") == "example.co.uk"
    assert registrable_domain("alice.blogspot.com") == "alice.blogspot.com"  # private suffix
    assert registrable_domain("co.uk") is None
    assert registrable_domain("127.0.0.1") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
@example([" https://a.example/x\t", "\nHTTP://B.example/", "https://a.example/\x01x ",
          "\thttps://b\u00fccher.example/"])  # whitespace and control characters at the ends
def test_hosts_alone_equal_hosts_of_canonical_urls(values: list[str]) -> None:
    from scrub.urls import canonical_hosts, hosts_of

    series = pl.Series(values, dtype=pl.String)
    assert canonical_hosts(series).to_list() == hosts_of(canonicalize_urls(series)).to_list()


def _canonical_tail(url: str) -> str | None:
    canonical = canonical_url(url)
    if canonical is None:
        return None
    path = canonical.split("://", 1)[1].split("?", 1)[0]
    return path.rsplit("/", 1)[1] if "/" in path else ""


@settings(max_examples=400, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
@example(["http://h/a/..", "http://h/a/.", "http://h", "http://h?x/y", "http://h/a%2e%2E",
          "http://h/x/%41b%7e ", " http://h/a.jpg#f/g", "http://u/v@h/w", "http://h/é.jpg",
          "http://h/a/b.jpg?q=1/2"])
@example(["http://h/a/%2e%2E", "http://h/a/%2E?x", "http://h/%%41%zz%2f%7E.jpg",
          "http://h/%4", "http://h/a%20b%2Fc%c3%a9.JPG#f", "http://h/x/%2e%2e%2e"])
def test_tails_equal_last_segments_of_canonical_urls(values: list[str]) -> None:
    """Probe sets of releases rely on this: a URL's tail is its canonical path's last segment,
    whatever its spelling (values that are not URLs may get any tail)."""
    from scrub.urls import url_tails

    got = url_tails(pl.Series(values, dtype=pl.String)).to_list()
    for value, tail in zip(values, got):
        expected = _canonical_tail(value)
        if expected is not None:
            assert tail == expected, value
