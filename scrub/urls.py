"""URL canonicalisation and the keys derived from a URL (host, registrable domain).

Opt-out registries and takedown requests name URLs in whatever spelling their authors had; the
dataset stores URLs as crawled. Both sides are brought to one canonical form before comparing.
The rules, applied in this order (RFC 3986 section 6 normalisation, plus what browsers do):

1. Surrounding whitespace is stripped. A value with a control character, without a
   ``scheme://host`` part, or with an empty host is not a URL: it canonicalises to null and can
   only be counted as unmatchable.
2. The scheme and the host are lower-cased; a trailing dot on the host is dropped.
3. An IDN host (non-ASCII) becomes punycode (IDNA 2008 with UTS 46 mapping).
4. The port is dropped when it is the scheme's default (http 80, https 443, ftp 21) or empty;
   leading zeros of a port are dropped.
5. In the path and the query, percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``)
   are decoded, every other escape gets upper-case hex, and characters that may not appear raw in
   a URL (non-ASCII as UTF-8, space, ``"<>\\^`{|}``) are percent-encoded.
6. Dot segments (``.`` and ``..``) of the path are resolved; an empty path becomes ``/``.
7. The fragment is dropped; an empty query (a bare ``?``) is dropped. Query parameters keep their
   order and spelling (reordering them can change what a server returns).

User information (``user@``) is kept as written. :func:`canonical_url` is the plain reference
implementation, one URL at a time; :func:`canonicalize_urls` does the same to a whole polars column
with vectorised string operations, doing per-value Python work only for the few distinct hosts that
need IDNA and the few paths with dot segments. Property tests check that both agree.

Derived keys: :func:`url_host` (canonical host, without port) and :func:`registrable_domain`
(the host's registrable domain, "eTLD+1", from the public suffix list bundled with tldextract,
private section included, as browsers use it; never fetched from the network).
"""

from __future__ import annotations

import functools
import re

import idna
import polars as pl
import tldextract

DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable ASCII that must be escaped when it appears raw in a path or query.
_UNSAFE_ASCII = ' "<>\\^`{|}'
_HEXDIGITS = "0123456789abcdefABCDEF"

# scheme, userinfo, host, port, path, query (fragment dropped). Hosts may be bracketed IPv6.
_URL = re.compile(
    r"^([A-Za-z][A-Za-z0-9+.\-]*)://(?:([^@/?#]*)@)?(\[[^\]/?#]*\]|[^:/?#]*)(?::([^/?#]*))?"
    r"([^?#]*)(?:\?([^#]*))?(?:#.*)?$", re.S)
_POLARS_URL = (
    r"^([A-Za-z][A-Za-z0-9+.\-]*)://(?:([^@/?#]*)@)?(\[[^\]/?#]*\]|[^:/?#]*)(?::([^/?#]*))?"
    r"([^?#]*)(?:\?([^#]*))?(?:#.*)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


# ---------------------------------------------------------------------------------------------
# Reference implementation, one URL at a time.


def canonical_url(url: str) -> str | None:
    """The canonical form of ``url``, or None when it is not a URL (see the module's rules)."""
    text = url.strip()
    if _CONTROL.search(text):
        return None
    match = _URL.match(text)
    if match is None:
        return None
    scheme, userinfo, host, port, path, query = match.groups()
    scheme = scheme.lower()
    host = canonical_host(host)
    if host is None:
        return None
    port = _canonical_port(scheme, port)
    path = remove_dot_segments(normalize_percent(path)) or "/"
    query = normalize_percent(query) if query else ""
    out = f"{scheme}://"
    if userinfo is not None:
        out += f"{userinfo}@"
    out += host
    if port:
        out += f":{port}"
    out += path
    if query:
        out += f"?{query}"
    return out


@functools.lru_cache(maxsize=65536)
def canonical_host(host: str) -> str | None:
    """Lower-cased host, punycode for IDN, no trailing dot; None when empty or not encodable."""
    host = host.lower().rstrip(".")
    if not host:
        return None
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _canonical_port(scheme: str, port: str | None) -> str:
    if not port:
        return ""
    stripped = port.lstrip("0") or "0"
    return "" if DEFAULT_PORTS.get(scheme) == stripped else stripped


def normalize_percent(text: str) -> str:
    """Decode escapes of unreserved characters, upper-case the others, escape unsafe characters."""
    def unescape(match: re.Match[str]) -> str:
        value = int(match.group(1), 16)
        return chr(value) if value in _UNRESERVED else f"%{value:02X}"

    text = _PERCENT.sub(unescape, text)
    if text.isascii() and not any(ch in _UNSAFE_ASCII for ch in text):
        return text
    return "".join(_escape_char(ch) for ch in text)


@functools.lru_cache(maxsize=65536)
def _escape_char(ch: str) -> str:
    if ch.isascii() and ch not in _UNSAFE_ASCII:
        return ch
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve ``.`` and ``..`` segments of a path."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def url_host(url: str) -> str | None:
    """The canonical host of ``url`` (no port), or None."""
    canonical = canonical_url(url)
    if canonical is None:
        return None
    match = _URL.match(canonical)
    return match.group(3) if match else None


@functools.lru_cache(maxsize=1)
def _psl() -> tldextract.TLDExtract:
    # suffix_list_urls=() keeps tldextract on its bundled snapshot: no network, ever.
    return tldextract.TLDExtract(suffix_list_urls=(), include_psl_private_domains=True,
                                 cache_dir=None)


@functools.lru_cache(maxsize=262144)
def registrable_domain(host: str) -> str | None:
    """The registrable domain (eTLD+1) of a canonical host; None for IPs and bare suffixes."""
    result = _psl()(host)
    domain = getattr(result, "top_domain_under_public_suffix", None)
    if domain is None:
        domain = result.registered_domain
    return domain or None


# ---------------------------------------------------------------------------------------------
# Vectorised implementation over polars columns.

def _percent_table() -> tuple[list[str], list[str]]:
    """Every spelling of every escape whose canonical form differs from it, and that form."""
    patterns: list[str] = []
    replacements: list[str] = []
    for value in range(256):
        canonical = chr(value) if value in _UNRESERVED else f"%{value:02X}"
        hi, lo = f"{value:02x}"
        for a in {hi, hi.upper()}:
            for b in {lo, lo.upper()}:
                spelled = f"%{a}{b}"
                if spelled != canonical:
                    patterns.append(spelled)
                    replacements.append(canonical)
    return patterns, replacements


_PCT_PATTERNS, _PCT_REPLACEMENTS = _percent_table()


def _normalize_percent_column(text: pl.Expr) -> pl.Expr:
    return (pl.when(text.str.contains("%", literal=True))
            .then(text.str.replace_many(_PCT_PATTERNS, _PCT_REPLACEMENTS))
            .otherwise(text))


def _escape_unsafe(values: pl.Series) -> pl.Series:
    """Percent-encode non-ASCII and unsafe ASCII characters (only rows that have any)."""
    unsafe = values.str.contains(r"[^\x21-\x7e]|[\"<>\\^`{|}]").fill_null(False)
    rows = unsafe.arg_true()
    if len(rows) == 0:
        return values
    subset = values.gather(rows)
    chars = subset.str.extract_all(r"[^\x21-\x7e]|[\"<>\\^`{|}]").explode().unique().drop_nulls()
    found = chars.to_list()
    escaped = subset.str.replace_many(found, [_escape_char(ch) for ch in found])
    return values.scatter(rows, escaped)


def canonicalize_urls(urls: pl.Series) -> pl.Series:
    """:func:`canonical_url` over a whole column; null where a value is not a URL."""
    frame = pl.DataFrame({"url": urls.cast(pl.String).str.strip_chars()})
    parts = frame.select(
        pl.col("url").str.contains(r"[\x00-\x1f\x7f]").fill_null(True).alias("control"),
        pl.col("url").str.extract_groups(_POLARS_URL).alias("g"),
    ).unnest("g")
    parts.columns = ["control", "scheme", "userinfo", "host", "port", "path", "query"]
    parts = parts.with_columns(
        pl.col("scheme").str.to_lowercase(),
        pl.col("host").str.to_lowercase().str.strip_chars_end("."),
        _normalize_percent_column(pl.col("path")).alias("path"),
        _normalize_percent_column(pl.col("query")).alias("query"),
    )
    # The regex cannot tell "user@" absent from present-but-empty; look for the @ itself.
    parts = parts.with_columns(
        pl.when(frame["url"].str.contains(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*@"))
        .then(pl.col("userinfo")).otherwise(None).alias("userinfo"))
    hosts = _canonical_hosts(parts["host"])
    path = _resolve_dot_segments(_escape_unsafe(parts["path"]))
    query = _escape_unsafe(parts["query"])
    parts = parts.with_columns(host=hosts, path=path, query=query)
    port = pl.col("port").str.strip_chars_start("0")
    port = pl.when(pl.col("port").is_not_null() & (port == "")).then(pl.lit("0")).otherwise(port)
    default = pl.col("scheme").replace_strict(DEFAULT_PORTS, default=None)
    port = pl.when(pl.col("port").is_null() | (pl.col("port") == "") | (port == default)) \
        .then(pl.lit("")).otherwise(pl.lit(":") + port)
    result = parts.select(
        pl.when(pl.col("control") | pl.col("scheme").is_null() | pl.col("host").is_null())
        .then(None)
        .otherwise(pl.concat_str([
            pl.col("scheme"), pl.lit("://"),
            pl.when(pl.col("userinfo").is_not_null()).then(pl.col("userinfo") + "@")
            .otherwise(pl.lit("")),
            pl.col("host"), port,
            pl.when(pl.col("path") == "").then(pl.lit("/")).otherwise(pl.col("path")),
            pl.when(pl.col("query").fill_null("") == "").then(pl.lit(""))
            .otherwise(pl.lit("?") + pl.col("query")),
        ])).alias(urls.name or "url"))
    return result.to_series()


def _canonical_hosts(hosts: pl.Series) -> pl.Series:
    """Empty hosts become null; non-ASCII hosts go through IDNA, once per distinct host."""
    hosts = pl.select(pl.when(hosts == "").then(None).otherwise(hosts)).to_series()
    needs = hosts.str.contains(r"[^\x00-\x7f]").fill_null(False)
    rows = needs.arg_true()
    if len(rows) == 0:
        return hosts
    subset = hosts.gather(rows)
    distinct = subset.unique().drop_nulls().to_list()
    mapping = {h: canonical_host(h) for h in distinct}
    return hosts.scatter(rows, subset.replace_strict(mapping, default=None,
                                                     return_dtype=pl.String))


def _resolve_dot_segments(paths: pl.Series) -> pl.Series:
    """Dot segments resolved, once per distinct path that has one (they are rare)."""
    dotted = paths.str.contains(r"(^|/)\.\.?(/|$)").fill_null(False)
    rows = dotted.arg_true()
    if len(rows) == 0:
        return paths
    subset = paths.gather(rows)
    distinct = subset.unique().drop_nulls().to_list()
    mapping = {p: remove_dot_segments(p) for p in distinct}
    return paths.scatter(rows, subset.replace_strict(mapping, default=None,
                                                     return_dtype=pl.String))


def hosts_of(canonical: pl.Series) -> pl.Series:
    """The host of each canonical URL (null stays null)."""
    return canonical.str.extract(r"^[a-z][a-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1)


def registrable_domains(hosts: pl.Series) -> pl.Series:
    """:func:`registrable_domain` over a column of canonical hosts, once per distinct host."""
    distinct = hosts.unique().drop_nulls().to_list()
    mapping = {h: registrable_domain(h) for h in distinct}
    return hosts.replace_strict(mapping, default=None, return_dtype=pl.String)
