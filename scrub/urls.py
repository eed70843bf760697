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

Derived keys: :func:`url_host` (canonical host, without port), :func:`registrable_domain`
(the host's registrable domain, "eTLD+1", from the public suffix list bundled with tldextract,
private section included, as browsers use it; never fetched from the network) and
:func:`host_suffixes` (every parent domain of a host, what domain rules match).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import idna
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from scrub.keys import string_buffers

if TYPE_CHECKING:
    import tldextract

DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable ASCII that must be escaped when it appears raw in a path or query.
_UNSAFE_ASCII = ' "<>\\^`{|}'

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


# ---------------------------------------------------------------------------------------------
# Reference implementation, one URL at a time.


def split_url(text: str) -> tuple[str, str | None, str, str | None, str, str | None] | None:
    """``(scheme, userinfo, host, port, path, query)`` of a URL, or None when it has no
    ``scheme://`` part. The fragment is dropped; ``path`` may be empty; host and port are as
    written. The authority ends at the first ``/``, ``?`` or ``#``; userinfo ends at its first
    ``@``; the port follows the first ``:`` of the host (after ``]`` for an IPv6 literal)."""
    scheme, sep, rest = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    rest = rest.split("#", 1)[0]
    before_query, question, query = rest.partition("?")
    authority, slash, path = before_query.partition("/")
    userinfo, at, hostport = authority.partition("@")
    if not at:
        userinfo, hostport = None, authority  # type: ignore[assignment]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return None
        host, after = hostport[: close + 1], hostport[close + 1:]
        if after and not after.startswith(":"):
            return None
        port = after[1:] if after else None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    return (scheme, userinfo, host, port, "/" + path if slash else "",
            query if question else None)


def canonical_url(url: str) -> str | None:
    """The canonical form of ``url``, or None when it is not a URL (see the module's rules)."""
    text = url.strip()
    if _CONTROL.search(text):
        return None
    parts = split_url(text)
    if parts is None:
        return None
    scheme, userinfo, host, port, path, query = parts
    scheme = scheme.lower()
    host = canonical_host(host)
    if host is None or (port and not port.isdigit()):
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
    parts = split_url(canonical)
    return parts[2] if parts else None


@functools.lru_cache(maxsize=1)
def _psl() -> tldextract.TLDExtract:
    import tldextract  # here: it imports requests (~70 ms), which most commands never need

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

def _before(expr: pl.Expr, by: str) -> pl.Expr:
    """The text before the first ``by`` (all of it when ``by`` is absent)."""
    return expr.str.splitn(by, 2).struct.field("field_0")


def _after(expr: pl.Expr, by: str) -> pl.Expr:
    """The text after the first ``by``; null where ``by`` is absent."""
    return expr.str.splitn(by, 2).struct.field("field_1")


_UNSAFE = r"[^\x21-\x7e]|[\"<>\\^`{|}]"


def _parse(urls: pl.Series) -> pl.DataFrame:
    """The steps of :func:`split_url` plus the host and port rules, over a whole column.

    Columns: ``invalid`` (not a URL), ``scheme`` (lower case), ``userinfo``, ``host`` (canonical),
    ``port`` ("" or ":NNNN", canonical), and raw ``path`` and ``query``. Written as two lazy
    queries (plus per-value work on rare rows): each eager polars call costs a query's overhead,
    which dominated small batches.
    """
    col = pl.col
    text = col("url").str.strip_chars()
    parsed = (
        pl.LazyFrame({"url": urls.cast(pl.String)})
        .select(text.alias("text"))
        .with_columns(scheme=_before(col("text"), "://"), rest=_after(col("text"), "://"))
        .with_columns(
            invalid=(col("text").str.contains(r"[\x00-\x1f\x7f]").fill_null(True)
                     | col("rest").is_null()
                     | ~col("scheme").str.contains(r"^[A-Za-z][A-Za-z0-9+.\-]*$").fill_null(False)),
            rest=_before(col("rest"), "#"))
        .with_columns(before_query=_before(col("rest"), "?"), query=_after(col("rest"), "?"))
        .with_columns(authority=_before(col("before_query"), "/"),
                      path_rest=_after(col("before_query"), "/"))
        .with_columns(
            path=pl.when(col("path_rest").is_null()).then(pl.lit(""))
            .otherwise(pl.lit("/") + col("path_rest")),
            has_at=col("authority").str.contains("@", literal=True).fill_null(False))
        .with_columns(
            userinfo=pl.when(col("has_at")).then(_before(col("authority"), "@")),
            hostport=pl.when(col("has_at")).then(_after(col("authority"), "@"))
            .otherwise(col("authority")))
        .select(
            "invalid", "userinfo", "path", "query", "hostport",
            col("scheme").str.to_lowercase(),
            _before(col("hostport"), ":").str.to_lowercase().str.strip_chars_end(".")
            .alias("host"),
            _after(col("hostport"), ":").alias("port"),
            col("hostport").str.starts_with("[").fill_null(False).alias("bracket"))
        .with_columns(host=pl.when(col("host") != "").then(col("host")),
                      idn=col("host").str.contains(r"[^\x00-\x7f]").fill_null(False))
        .collect())
    if parsed["bracket"].any():  # IPv6 literals, rare: split as split_url does, per value
        rows = parsed["bracket"].arg_true()
        ipv6 = [_split_bracket_host(v) for v in parsed["hostport"].gather(rows).to_list()]
        parsed = parsed.with_columns(
            parsed["host"].scatter(rows, pl.Series([canonical_host(h) if h else None
                                                    for h, _, _ in ipv6], dtype=pl.String)),
            parsed["port"].scatter(rows, pl.Series([p for _, p, _ in ipv6], dtype=pl.String)),
            parsed["invalid"].scatter(rows, parsed["invalid"].gather(rows)
                                      | pl.Series([bad for _, _, bad in ipv6])))
    if parsed["idn"].any():  # non-ASCII hosts: IDNA once per distinct host
        parsed = parsed.with_columns(
            map_distinct(parsed["host"], canonical_host, where=parsed["idn"]))
    port = col("port")
    present = port.is_not_null() & (port != "")
    digits = port.str.strip_chars_start("0")
    digits = pl.when(digits == "").then(pl.lit("0")).otherwise(digits)
    default = col("scheme").replace_strict(DEFAULT_PORTS, default=None, return_dtype=pl.String)
    return parsed.lazy().select(
        (col("invalid") | col("host").is_null()
         | (present & ~port.str.contains(r"^[0-9]+$").fill_null(False))).alias("invalid"),
        "scheme", "userinfo", "host",
        pl.when(~present | (digits == default)).then(pl.lit(""))
        .otherwise(pl.lit(":") + digits).alias("port"),
        "path", "query").collect()


def _percent_table() -> dict[str, str]:
    """Every spelling of every escape whose canonical form differs from it -> that form."""
    table: dict[str, str] = {}
    for value in range(256):
        canonical = chr(value) if value in _UNRESERVED else f"%{value:02X}"
        hi, lo = f"{value:02x}"
        for a in {hi, hi.upper()}:
            for b in {lo, lo.upper()}:
                if f"%{a}{b}" != canonical:
                    table[f"%{a}{b}"] = canonical
    return table


_PERCENT_TABLE = _percent_table()
_UNRESERVED_ESCAPES = {k: v for k, v in _PERCENT_TABLE.items() if len(v) == 1}


def decode_unreserved_escapes(values: pl.Series) -> pl.Series:
    """Escapes of unreserved characters (``%7E``, ``%7e``...) decoded, as canonical URLs
    have them; every other character left as it is."""
    return values.str.replace_many(list(_UNRESERVED_ESCAPES), list(_UNRESERVED_ESCAPES.values()))


def canonicalize_urls(urls: pl.Series) -> pl.Series:
    """:func:`canonical_url` over a whole column; null where a value is not a URL.

    The same steps as :func:`split_url` and :func:`canonical_url`, with literal splits over whole
    columns; rare shapes (IPv6 hosts, IDN hosts, dot segments) get per-value work on just those
    rows (once per distinct host or path). Escapes are rewritten with a table of just the escapes
    and unsafe characters that occur: building one of all ~900 spellings costs more than the
    rewriting.
    """
    text = urls.cast(pl.String)
    simple = pl.select(pl.lit(text).str.contains(_ALREADY_CANONICAL)
                       & ~pl.lit(text).str.contains(_DOT_SEGMENT)).to_series().fill_null(False)
    if simple.all():
        return text.alias(urls.name or "url")
    if simple.any():
        rows = (~simple).arg_true()
        return text.scatter(rows, _canonicalize(text.gather(rows))).alias(urls.name or "url")
    return _canonicalize(text).alias(urls.name or "url")


#: URLs that are their own canonical form: lower-case scheme and host (no trailing dot, no
#: port, no user info), a path and an optional non-empty query of characters that need no
#: escaping, no escapes, no fragment; and (checked apart) no dot segment. Most URLs of a real
#: dataset are like this and skip the column pipeline.
_ALREADY_CANONICAL = (r"^[a-z][a-z0-9+.\-]*://[a-z0-9\-_~]+(?:\.[a-z0-9\-_~]+)*"
                      r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]+)?$")
_DOT_SEGMENT = r"/\.\.?(?:[/?]|$)"


def _canonicalize(urls: pl.Series) -> pl.Series:
    parts = _parse(urls)
    col = pl.col
    both = pl.concat([col("path"), col("query")]).drop_nulls()
    found = parts.lazy().select(
        both.filter(both.str.contains("%", literal=True))
        .str.extract_all(r"%[0-9A-Fa-f]{2}").explode().drop_nulls().unique().implode()
        .alias("escapes"),
        both.str.extract_all(_UNSAFE).explode().drop_nulls().unique().implode().alias("unsafe"),
    ).collect()
    escapes = [e for e in found["escapes"][0].to_list() if e in _PERCENT_TABLE]
    unsafe = found["unsafe"][0].to_list()

    def normalized(part: pl.Expr) -> pl.Expr:
        if escapes:
            part = part.str.replace_many(escapes, [_PERCENT_TABLE[e] for e in escapes])
        if unsafe:
            part = part.str.replace_many(unsafe, [_escape_char(ch) for ch in unsafe])
        return part

    parts = parts.lazy().with_columns(path=normalized(col("path")),
                                      query=normalized(col("query"))).collect()
    dots = parts["path"].str.contains(r"(^|/)\.\.?(/|$)").fill_null(False)
    if dots.any():
        parts = parts.with_columns(map_distinct(parts["path"], remove_dot_segments, where=dots))
    return parts.select(
        pl.when(col("invalid")).then(None).otherwise(pl.concat_str([
            col("scheme"), pl.lit("://"),
            pl.when(col("userinfo").is_not_null()).then(col("userinfo") + "@")
            .otherwise(pl.lit("")),
            col("host"), col("port"),
            pl.when(col("path") == "").then(pl.lit("/")).otherwise(col("path")),
            pl.when(col("query").fill_null("") == "").then(pl.lit(""))
            .otherwise(pl.lit("?") + col("query")),
        ])).alias(urls.name or "url")).to_series()


def canonical_hosts(urls: pl.Series) -> pl.Series:
    """The canonical host of each URL; null where a value is not a URL.

    Equal to ``hosts_of(canonicalize_urls(urls))`` without building canonical paths (see
    :func:`host_table`, which this spells out row by row).
    """
    codes, distinct = host_table(urls)
    return hosts_at(codes, distinct).alias(urls.name or "host")


def hosts_at(codes: np.ndarray, distinct: pl.Series) -> pl.Series:
    """The hosts of a :func:`host_table`, one per row (null where the code is -1)."""
    index = pl.Series(codes, dtype=pl.Int64)
    return distinct.gather(pl.select(pl.when(index >= 0).then(index)).to_series())


def host_table(urls: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Canonical hosts as ``(codes, distinct)``: ``distinct`` holds each host once and
    ``codes`` (int64, one per row) indexes into it, -1 where a value is not a URL.

    Hosts repeat a lot, so host rules look up each distinct host once and mark rows by code
    (a gather) instead of comparing strings row by row. Per row there is one literal split
    (``scheme:``, ``""``, authority) and a byte scan for control characters; everything else is
    worked out once per distinct scheme and per distinct authority (results are cached across
    calls). Rows with whitespace or non-ASCII at an end take the general column path.
    """
    text = urls.cast(pl.String)
    n = len(text)
    offsets, data, nulls = string_buffers(text.to_arrow())
    starts, ends = offsets[:-1], offsets[1:]
    control = np.zeros(n, dtype=bool)
    if len(data):
        at = np.flatnonzero((data < 32) | (data == 127))
        control[np.searchsorted(offsets, at, side="right") - 1] = True
        first = data[np.minimum(starts, len(data) - 1)]
        last = data[np.maximum(ends - 1, 0)]
        edge = (ends > starts) & ((first <= 32) | (first >= 128) | (last <= 32) | (last >= 128))
    else:
        edge = np.zeros(n, dtype=bool)
    slow = edge & ~nulls  # whitespace (tabs, newlines too) at an end: the general parser
    col = pl.col
    parts = (pl.LazyFrame({"u": text})
             .select(col("u").str.split_exact("/", 2).alias("p"))
             .select(col("p").struct.field("field_0").alias("scheme"),
                     col("p").struct.field("field_1").alias("empty"),
                     col("p").struct.field("field_2").alias("authority"))
             .collect())
    schemes = [v for v in parts["scheme"].unique().drop_nulls().to_list()
               if v.endswith(":") and _SCHEME.fullmatch(v[:-1])]
    ok = (parts.lazy().select(col("scheme").is_in(schemes) & (col("empty") == ""))
          .collect().to_series().fill_null(False).to_numpy()) & ~(control | slow)
    found: dict[str, int] = {}
    index, authorities = _distinct(parts["authority"])
    ok &= index >= 0
    codes = _codes_of([_host_of_authority(a) for a in authorities], found)[np.where(ok, index, -1)]
    rows = np.flatnonzero(slow)
    if len(rows):
        general = _parse(text.gather(rows)).select(
            pl.when(col("invalid")).then(None).otherwise(col("host"))).to_series()
        index, hosts = _distinct(general)
        codes[rows] = _codes_of(hosts, found)[index]
    return codes, pl.Series(list(found), dtype=pl.String)


def encode_hosts(hosts: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """A column of hosts (nulls allowed) as :func:`host_table` gives them."""
    index, distinct = _distinct(hosts)
    return index, pl.Series(distinct, dtype=pl.String)


def _distinct(values: pl.Series) -> tuple[np.ndarray, list[str]]:
    """(index of each value in the distinct values, -1 for null; the distinct values, which
    hold no null)."""
    encoded = pc.dictionary_encode(values.to_arrow())
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return index, encoded.dictionary.to_pylist()


def _codes_of(hosts: list[str | None], found: dict[str, int]) -> np.ndarray:
    """Codes of some hosts in ``found`` (new ones added), -1 for None, plus a trailing -1 (so
    that an index of -1 gives -1)."""
    return np.array([-1 if h is None else found.setdefault(h, len(found)) for h in hosts]
                    + [-1], dtype=np.int64)


@functools.lru_cache(maxsize=1 << 18)
def _host_of_authority(rest: str) -> str | None:
    """The canonical host in what follows ``scheme://`` up to the next ``/`` (as
    :func:`split_url` and :func:`canonical_url` read it), or None when that is not a URL."""
    authority = rest.split("#", 1)[0].split("?", 1)[0]
    hostport = authority.partition("@")[2] if "@" in authority else authority
    if hostport.startswith("["):
        host, port, bad = _split_bracket_host(hostport)
        if bad or host is None:
            return None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    if port and not (port.isascii() and port.isdigit()):
        return None
    return canonical_host(host)


def _split_bracket_host(hostport: str) -> tuple[str | None, str | None, bool]:
    """(host, port, invalid) of an IPv6-literal authority, as :func:`split_url` reads it."""
    close = hostport.find("]")
    if close < 0:
        return None, None, True
    host, after = hostport[: close + 1], hostport[close + 1:]
    if after and not after.startswith(":"):
        return None, None, True
    return host, (after[1:] if after else None), False


def map_distinct(values: pl.Series, function, *,  # type: ignore[no-untyped-def]
                 where: pl.Series | None = None) -> pl.Series:
    """``function`` applied once per distinct value (to the rows ``where`` is true, if given).

    For per-value work that vectorises badly (IDNA, the public suffix list, dot segments) on
    columns whose values repeat a lot or rarely need it.
    """
    rows = where.fill_null(False).arg_true() if where is not None else None
    subset = values.gather(rows) if rows is not None else values
    if len(subset) == 0:
        return values
    mapping = {v: function(v) for v in subset.unique().drop_nulls().to_list()}
    mapped = subset.replace_strict(mapping, default=None, return_dtype=pl.String)
    return values.scatter(rows, mapped) if rows is not None else mapped


def hosts_of(canonical: pl.Series) -> pl.Series:
    """The host of each canonical URL (null stays null)."""
    return canonical.str.extract(r"^[a-z][a-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1)


#: Characters a path segment keeps as they are in canonical form (rule 5: unreserved
#: characters, sub-delimiters, ":" and "@"); a segment of only these is already canonical.
_PLAIN_SEGMENT = r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$"
#: Deleting this leaves a URL's last path segment and what follows it (its query and
#: fragment), or, when the URL has no path (its authority runs to a "?", a "#" or the end),
#: nothing at all.
_BEFORE_TAIL = r"(?s)^(?:[^?#/]*//[^?#/]*(?:[?#].*)?$|[^?#]*/)"


def _last_segments(urls: pl.Series) -> pl.Series:
    """What follows the last "/" before each URL's query or fragment, up to its "?" (a "#"
    before it is left in). One regex without capture groups (which would take the slower
    engine) and one literal split."""
    return (pl.DataFrame({"url": urls}).select(
        pl.col("url").str.replace(_BEFORE_TAIL, "").str.split_exact("?", 1)
        .struct.field("field_0")).to_series())


def url_tails(urls: pl.Series) -> pl.Series:
    """For each URL, the last segment of its canonical path ("" when the path ends with "/");
    for a value that is not a URL, some string of no consequence (or null).

    Equal to the last segment of :func:`canonicalize_urls` for every URL (tested), without
    canonicalising the URLs whose raw last segment is plain: rule 5 leaves such a segment as
    it is, rule 6 only changes the last segment when it is "." or ".." (it becomes ""), and
    no other rule touches it. The others (escapes, spaces, non-ASCII...) are canonicalised
    first. Incremental release rebuilds use it to rule out shards that cannot
    hold a listed URL (see :mod:`scrub.release.probe`).
    """
    text = urls.cast(pl.String)
    tails = _last_segments(text)
    fragments = tails.str.contains("#", literal=True).fill_null(False).arg_true()
    if len(fragments):  # a "#" before any "?": cut there too (the fragment holds the rest)
        tails = tails.scatter(fragments, tails.gather(fragments).str.split_exact("#", 1)
                              .struct.field("field_0"))
    frame = pl.DataFrame({"tail": tails}).with_columns(
        pl.when(pl.col("tail").is_in([".", ".."])).then(pl.lit("")).otherwise(pl.col("tail"))
        .alias("tail"),
        plain=pl.col("tail").str.contains(_PLAIN_SEGMENT).fill_null(True))
    tails = frame["tail"]
    rows = (~frame["plain"]).arg_true()
    if len(rows):
        slow = tails.gather(rows)
        escaped = slow.str.contains(_ESCAPED_SEGMENT).fill_null(False)
        fixed = slow
        some = escaped.arg_true()
        if len(some):  # plain but for escapes (file names with %20...): rule 5 on the segment
            normal = _normalize_escapes(slow.gather(some))
            fixed = fixed.scatter(some, pl.select(
                pl.when(pl.lit(normal).is_in([".", ".."])).then(pl.lit(""))
                .otherwise(pl.lit(normal))).to_series())
        other = (~escaped).arg_true()
        if len(other):  # spaces, non-ASCII...: the whole URL is canonicalised
            fixed = fixed.scatter(other, _last_segments(
                canonicalize_urls(text.gather(rows.gather(other)))))
        tails = tails.scatter(rows, fixed)
    return tails.alias(urls.name or "tail")


#: A segment that is plain but for "%" (escapes, or a "%" that escapes nothing).
_ESCAPED_SEGMENT = r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$"


def _normalize_escapes(values: pl.Series) -> pl.Series:
    """:func:`normalize_percent` of values that hold no character it escapes: the escapes of
    unreserved characters decoded, the others in upper case (a table of just the escapes
    found, as :func:`canonicalize_urls` does)."""
    found = (values.str.extract_all(r"%[0-9A-Fa-f]{2}").explode().drop_nulls().unique()
             .to_list())
    escapes = [e for e in found if e in _PERCENT_TABLE]
    if not escapes:
        return values
    return values.str.replace_many(escapes, [_PERCENT_TABLE[e] for e in escapes])


@functools.lru_cache(maxsize=1)
def _psl_rules() -> tuple[pl.Series, pl.Series, pl.Series]:
    """The public suffix list's rules (private section included) as exact suffixes, wildcard
    bases (``*.base``) and exceptions (``!name``)."""
    rules = list(_psl()._get_tld_extractor().tlds_incl_private)
    exact = [r for r in rules if not r.startswith(("*.", "!"))]
    wild = [r[2:] for r in rules if r.startswith("*.")]
    exceptions = [r[1:] for r in rules if r.startswith("!")]
    return (pl.Series(exact, dtype=pl.String), pl.Series(wild, dtype=pl.String),
            pl.Series(exceptions, dtype=pl.String))


def plainly_registrable(hosts: pl.Series) -> pl.Series:
    """True where a canonical ASCII host is surely its own registrable domain by the rules
    alone: one label on an exact public suffix that no wildcard or exception touches, and not
    a suffix itself. False means "not sure" (ask :func:`registrable_domain`), not "no"."""
    exact, wild, exceptions = _psl_rules()
    exact, wild, exceptions = exact.implode(), wild.implode(), exceptions.implode()
    rest = hosts.str.extract(r"^[^.]+\.(.+)$", 1)
    sure = (rest.is_in(exact) & ~rest.is_in(wild) & ~rest.is_in(exceptions)
            & ~hosts.is_in(exact) & ~hosts.is_in(exceptions)
            & ~hosts.str.contains(r"(?:^|\.)xn--") & hosts.str.contains(r"^[a-z0-9_.\-]+$"))
    return sure.fill_null(False)


def registrable_domains(hosts: pl.Series) -> pl.Series:
    """:func:`registrable_domain` over a column of canonical hosts, once per distinct host."""
    return map_distinct(hosts, registrable_domain)


@functools.lru_cache(maxsize=65536)
def icann_public_suffix(host: str) -> bool:
    """Whether a canonical host is itself a public suffix of the public suffix list's ICANN
    section (``com``, ``co.uk``, ``foo.ck`` under ``*.ck``; not ``blogspot.com``, which is in
    the private section). Punycode labels are looked up as the list spells them."""
    result = _psl()(host, include_psl_private_domains=False)
    return bool(result.suffix) and not result.domain and not result.subdomain


@functools.lru_cache(maxsize=1)
def _icann_rules() -> tuple[pl.Series, pl.Series, pl.Series]:
    """The ICANN section's rules as exact suffixes, wildcard bases and exceptions."""
    rules = list(_psl()._get_tld_extractor().tlds_excl_private)
    exact = [r for r in rules if not r.startswith(("*.", "!"))]
    wild = [r[2:] for r in rules if r.startswith("*.")]
    exceptions = [r[1:] for r in rules if r.startswith("!")]
    return (pl.Series(exact, dtype=pl.String), pl.Series(wild, dtype=pl.String),
            pl.Series(exceptions, dtype=pl.String))


def plain_icann_public_suffixes(hosts: pl.Series) -> pl.Series:
    """:func:`icann_public_suffix` over a column of canonical hosts made of ASCII labels none
    of which is punycode (the list spells IDN suffixes in Unicode): true where a host is an
    exact ICANN suffix, or one label on an ICANN wildcard base that no exception names."""
    exact, wild, exceptions = (rules.implode() for rules in _icann_rules())
    rest = hosts.str.extract(r"^[^.]+\.(.+)$", 1)
    return (hosts.is_in(exact) | (rest.is_in(wild) & ~hosts.is_in(exceptions))).fill_null(False)


def host_suffixes(hosts: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Every dot-suffix of each host, the host itself included, as ``(owner, suffixes)``:
    ``owner[i]`` (int64) is the position in ``hosts`` of the host ``suffixes[i]`` ends it.
    ``a.b.example.com`` gives ``a.b.example.com``, ``b.example.com``, ``example.com``,
    ``com``; a null host gives nothing.

    Domain rules match a host when one of its suffixes is listed (``host == D`` or
    ``host.endswith("." + D)``), whatever the public suffix list says about D; release probe
    sets record the same suffixes. One vectorised explode over the (distinct) hosts.
    """
    col = pl.col
    table = (pl.LazyFrame({"host": hosts.cast(pl.String)})
             .with_row_index("owner")
             .filter(col("host").is_not_null())
             .with_columns(labels=col("host").str.split("."))
             .with_columns(start=pl.int_ranges(0, col("labels").list.len()))
             .explode("start")
             .select(col("owner").cast(pl.Int64),
                     col("labels").list.slice(col("start")).list.join(".").alias("suffix"))
             .collect())
    return table["owner"].to_numpy(), table["suffix"]
