"""URL canonicalisation: properties of the reference, and the vectorised path against it."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scrub.urls import canonical_url, canonicalize_urls, registrable_domain, url_host

SEGMENT = st.text(alphabet=st.sampled_from(list("abcXYZ019-._~%/!$&'()*+,;=:@ é写\\\t\x01'")),
                  max_size=12)
HOST = st.sampled_from(["example.com", "EXAMPLE.com", "a.b.co.uk", "bücher.de", "127.0.0.1",
                        "[::1]", "[::1", "[::1]x", "xn--bcher-kva.de", "host.", "host..",
                        "sub.blogspot.com", "", ".", "cdn.%73hop.example", "host%2E",
                        "3325668414", "0xc6.0x39.0xac.0x3e", "0306.071.0254.076", "198.57.44094",
                        "[0:0::1]", "[::ffff:1.2.3.4]", "host\u3002", "ex\uff0eample.com",
                        "h%3A443", "a b", "ho\tst", "08.1.1.1", "a..b", "xn--zz", "\u212aa.com"])
URLS = st.builds(
    lambda lead, scheme, slashes, user, host, port, path, query, frag, trail: (
        f"{lead}{scheme}{slashes}{user}{host}{port}{path}{query}{frag}{trail}"),
    st.sampled_from(["", "", "", " ", "\x1c", "\x00\t", "<", "<URL:", "URL:", "\u3000"]),
    st.sampled_from(["http", "https", "HTTP", "ftp", "HtTpS", "ws", "wss", "file", "git+ssh",
                     "1http", "ht\ttp"]),
    st.sampled_from(["://", "://", "://", ":", ":/", ":///", ":\\\\", ":/\\"]),
    st.sampled_from(["", "", "", "user@", "u:p@", "a@b@", "@", "u\\@"]), HOST,
    st.sampled_from(["", ":80", ":443", ":8080", ":", ":0080", ":8o", ":99999", ":+443", ":4_43",
                     ":\u0664\u0664\u0663", ": 443", ":%34%34%33", ":65536", ":0000000443"]),
    st.lists(SEGMENT, max_size=4).map(lambda parts: "".join("/" + p for p in parts)),
    st.one_of(st.just(""), st.just("?"), SEGMENT.map(lambda q: "?" + q.replace("/", "="))),
    st.sampled_from(["", "#", "#frag"]),
    st.sampled_from(["", "", "", " ", "\n", ">", "\x1f", "\xa0"]),
)
ANY_TEXT = st.one_of(URLS, st.text(max_size=40))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(URLS)
@example("https:0080..")  # no trailing dots: a number, which is no address -> not a URL
@example("http://0x1../x")  # no trailing dots: an address
def test_canonicalisation_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    if once is not None:
        assert canonical_url(once) == once


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_vectorised_equals_reference(values: list[str]) -> None:
    assert canonicalize_urls(pl.Series(values, dtype=pl.String)).to_list() == \
        [canonical_url(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["example.com", "a.b.co.uk"]), st.lists(SEGMENT, max_size=3))
def test_equivalent_spellings_give_one_form(host: str, parts: list[str]) -> None:
    path = "".join("/" + p.replace("%", "").replace(" ", "_").translate(
        str.maketrans("", "", "\\\t\x01")) for p in parts)
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
    assert canonical_url("http://u@h.com:8080") == "http://h.com:8080/"  # user info dropped
    for bad in ["", "example.com/x", "data:image/png;base64,AAAA", "http://a\x00b/", "https:///",
                "git+ssh://host/x", "file:///etc/passwd", "http://h:65536/", "https://h/\ud800"]:
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    for value, tail in zip(values, got, strict=False):
        expected = _canonical_tail(value)
        if expected is not None:
            assert tail == expected, value


#: One spelling of each family that the WHATWG parser or a Python downloader reads as the
#: listed URL, with the canonical form (README, URL canonicalisation).
KNOWN_SPELLINGS = [
    ("https://cdn.%73hopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.shopify.com%2E/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://user:pass@cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://a@b@cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.shopify.com:+443/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.shopify.com:4_43/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.shopify.com:\u0664\u0664\u0663/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("<URL:https://cdn.shopify.com/a.jpg>", "https://cdn.shopify.com/a.jpg"),
    ("URL:https://cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("\x1c\x00https://cdn.shopify.com/a.jpg\x1f\x01", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.sho\tpify.com/a\n.jpg", "https://cdn.shopify.com/a.jpg"),
    ("http://3325668414/a.jpg", "http://198.57.172.62/a.jpg"),
    ("http://0xc6.0x39.0xac.0x3e/a.jpg", "http://198.57.172.62/a.jpg"),
    ("http://0306.071.0254.076/a.jpg", "http://198.57.172.62/a.jpg"),
    ("http://198.57.44094/a.jpg", "http://198.57.172.62/a.jpg"),
    ("http://[0:0::1]/a.jpg", "http://[::1]/a.jpg"),
    ("http://[::ffff:1.2.3.4]/a.jpg", "http://[::ffff:102:304]/a.jpg"),
    ("https://cdn.shopify.com\\s\\a.jpg", "https://cdn.shopify.com/s/a.jpg"),
    ("https:/cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https:///cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https:cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https:\\\\cdn.shopify.com/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn.shopify.com\u3002/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://cdn\uff0eshopify\uff0ecom/a.jpg", "https://cdn.shopify.com/a.jpg"),
    ("https://h.example/a\x01b", "https://h.example/a%01b"),  # a control inside: escaped
    ("https://h.example/x?a='b'", "https://h.example/x?a=%27b%27"),
    ("ws://h.example:80/x", "ws://h.example/x"),
]


def test_known_spellings() -> None:
    values = [spelling for spelling, _ in KNOWN_SPELLINGS]
    expected = [canonical for _, canonical in KNOWN_SPELLINGS]
    assert [canonical_url(v) for v in values] == expected
    assert canonicalize_urls(pl.Series(values)).to_list() == expected


def test_lone_surrogates_are_unmatchable_not_errors() -> None:
    """Text that UTF-8 cannot encode (a lone surrogate) is no URL on every path, scalar and
    vectorised: counted unmatchable, never an exception."""
    from scrub.urls import canonical_hosts, host_table, url_series, url_tails

    values = ["https://a.example/\ud800.jpg", "https://a.example/x.jpg", None, "\udcff"]
    assert canonical_url(values[0]) is None and url_host(values[0]) is None
    assert url_series(values).to_list() == [None, "https://a.example/x.jpg", None, None]
    assert canonicalize_urls(values).to_list() == [None, "https://a.example/x.jpg", None, None]
    assert canonical_hosts(values).to_list() == [None, "a.example", None, None]
    assert host_table(values)[0].tolist() == [-1, 0, -1, -1]
    assert url_tails(values).to_list()[1] == "x.jpg"


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([chr(c) for c in range(0x21)] + ["\x7f", "\x85", "\xa0",
                                                                  "\u3000", "\u2028"]),
                max_size=3), st.lists(st.sampled_from(["\t", "\n", "\r", "\x01", "\x7f"]),
                                      max_size=2),
       st.sampled_from(["", ":443", ":\u0664\u0664\u0663", ":\uff14\uff14\uff13", ":\u0968"]))
def test_controls_and_digits_read_alike_on_every_path(edges: list[str], inner: list[str],
                                                      port: str) -> None:
    """Controls and whitespace at the ends, controls inside, non-ASCII digits in a port:
    the reference, the column path, hosts and tails agree."""
    from scrub.urls import canonical_hosts, url_tails

    lead, trail = "".join(edges), "".join(reversed(edges))
    values = [f"{lead}https://a.example{port}/p{''.join(inner)}q/x.jpg{trail}",
              f"{lead}HTTPS://A.EXAMPLE{port}/x.jpg?{''.join(inner)}{trail}",
              f"https://a{''.join(inner)}.example{port}/{trail}"]
    reference = [canonical_url(v) for v in values]
    assert canonicalize_urls(values).to_list() == reference
    assert canonical_hosts(values).to_list() == [url_host(v) for v in values]
    tails = url_tails(values).to_list()
    assert [t for t, r in zip(tails, reference, strict=False) if r is not None] == \
        [_canonical_tail(v) for v, r in zip(values, reference, strict=False) if r is not None]


def test_every_escape_reads_alike_on_the_fast_path_and_the_reference() -> None:
    """URLs whose escapes are already canonical (``%20``, ``%2F``) skip the column pipeline;
    every byte's escape, in either case, in a path and a query, gives the reference's form."""
    cases = [template.format(f"{byte:{case}}")
             for byte in range(256) for case in ("02X", "02x")
             for template in ("https://a.example/p%{}q", "https://a.example/p?x=%{}",
                              "https://a.example/%{}", "https://a.example/a/%{}/../b")]
    cases += ["https://a.example/%2e%2E/x", "https://a.example/a/%2E%2E/b", "https://a.example/%",
              "https://a.example/%G0", "https://a.example/%2"]
    assert canonicalize_urls(cases).to_list() == [canonical_url(c) for c in cases]
