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
from dataclasses import dataclass

import idna
import numpy as np
import polars as pl
import pyarrow as pa
import tldextract

from scrub.keys import string_buffers

DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable ASCII that must be escaped when it appears raw in a path or query.
_UNSAFE_ASCII = ' "<>\\^`{|}'
_HEXDIGITS = "0123456789abcdefABCDEF"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_COMMON_SCHEMES = ["http", "https", "ftp", "HTTP", "HTTPS", "FTP"]
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


def _on_rows(values: pl.Series, rows: pl.Series, function) -> pl.Series:  # type: ignore[no-untyped-def]
    """``values`` with ``function`` applied to the given rows only (gather, work, scatter)."""
    if len(rows) == 0:
        return values
    return values.scatter(rows, function(values.gather(rows)))


def _normalize_percent_rows(values: pl.Series) -> pl.Series:
    rows = values.str.contains("%", literal=True).fill_null(False).arg_true()
    return _on_rows(values, rows,
                    lambda part: part.str.replace_many(_PCT_PATTERNS, _PCT_REPLACEMENTS))


_UNSAFE = r"[^\x21-\x7e]|[\"<>\\^`{|}]"


def _escape_unsafe(values: pl.Series) -> pl.Series:
    """Percent-encode non-ASCII and unsafe ASCII characters (only rows that have any)."""
    rows = values.str.contains(_UNSAFE).fill_null(False).arg_true()
    if len(rows) == 0:
        return values
    subset = values.gather(rows)
    found = subset.str.extract_all(_UNSAFE).explode().unique().drop_nulls().to_list()
    return values.scatter(rows, subset.str.replace_many(found,
                                                         [_escape_char(ch) for ch in found]))


def _split(values: pl.Series, by: str) -> tuple[pl.Series, pl.Series]:
    """Split at the first ``by``: (before, after); after is null where ``by`` is absent."""
    parts = values.str.splitn(by, 2).struct.unnest()
    return parts["field_0"], parts["field_1"]


@dataclass
class _UrlColumns:
    """A URL column split into canonical scheme, host and port, and raw path and query."""

    invalid: pl.Series
    scheme: pl.Series
    userinfo: pl.Series
    host: pl.Series
    port: pl.Series  # "" or ":NNNN"
    path: pl.Series
    query: pl.Series


def _split_columns(urls: pl.Series) -> _UrlColumns:
    """The steps of :func:`split_url` plus the host and port rules, over whole columns."""
    text = urls.cast(pl.String).str.strip_chars()
    n = len(text)
    invalid = text.is_null() | text.str.contains(r"[\x00-\x1f\x7f]").fill_null(True)
    scheme, rest = _split(text, "://")
    known = scheme.is_in(_COMMON_SCHEMES).fill_null(False)
    odd = (~known & rest.is_not_null()).arg_true()
    scheme_ok = known.scatter(odd, scheme.gather(odd).str.contains(
        r"^[A-Za-z][A-Za-z0-9+.\-]*$").fill_null(False)) if len(odd) else known
    invalid = invalid | rest.is_null() | ~scheme_ok
    rest = _split(rest, "#")[0]
    before_query, query = _split(rest, "?")
    authority, path_rest = _split(before_query, "/")
    path = pl.select(pl.when(path_rest.is_null()).then(pl.lit(""))
                     .otherwise(pl.lit("/") + path_rest)).to_series()
    has_at = authority.str.contains("@", literal=True).fill_null(False)
    userinfo = pl.Series([None] * n, dtype=pl.String)
    hostport = authority
    at_rows = has_at.arg_true()
    if len(at_rows):
        user, after = _split(authority.gather(at_rows), "@")
        userinfo = userinfo.scatter(at_rows, user)
        hostport = hostport.scatter(at_rows, after)
    host, port = _split(hostport, ":")
    bracket = hostport.str.starts_with("[").fill_null(False).arg_true()
    if len(bracket):
        ipv6 = [_split_bracket_host(v) for v in hostport.gather(bracket).to_list()]
        host = host.scatter(bracket, pl.Series([p[0] for p in ipv6], dtype=pl.String))
        port = port.scatter(bracket, pl.Series([p[1] for p in ipv6], dtype=pl.String))
        invalid = invalid.scatter(bracket, invalid.gather(bracket)
                                  | pl.Series([p[2] for p in ipv6], dtype=pl.Boolean))
    host = _canonical_hosts(host.str.to_lowercase().str.strip_chars_end("."))
    port_rows = (port.is_not_null() & (port != "")).fill_null(False).arg_true()
    port_text = pl.Series([""] * n, dtype=pl.String)
    if len(port_rows):
        raw_port = port.gather(port_rows)
        invalid = invalid.scatter(port_rows, invalid.gather(port_rows)
                                  | ~raw_port.str.contains(r"^[0-9]+$").fill_null(False))
        digits = raw_port.str.strip_chars_start("0")
        digits = pl.select(pl.when(digits == "").then(pl.lit("0")).otherwise(digits)).to_series()
        default = scheme.gather(port_rows).str.to_lowercase() \
            .replace_strict(DEFAULT_PORTS, default=None, return_dtype=pl.String)
        shown = pl.select(pl.when(digits == default).then(pl.lit(""))
                          .otherwise(pl.lit(":") + digits)).to_series()
        port_text = port_text.scatter(port_rows, shown)
    return _UrlColumns(invalid=invalid | host.is_null(), scheme=scheme.str.to_lowercase(),
                       userinfo=userinfo, host=host, port=port_text, path=path, query=query)


def canonicalize_urls(urls: pl.Series) -> pl.Series:
    """:func:`canonical_url` over a whole column; null where a value is not a URL.

    The same steps as :func:`split_url` and :func:`canonical_url`, with literal splits over whole
    columns; rare shapes (IPv6 hosts, IDN hosts, dot segments) get per-value work on just those
    rows (once per distinct host or path).
    """
    parts = _split_columns(urls)
    path = _resolve_dot_segments(_escape_unsafe(_normalize_percent_rows(parts.path)))
    query = _escape_unsafe(_normalize_percent_rows(parts.query))
    frame = pl.DataFrame({
        "invalid": parts.invalid, "scheme": parts.scheme, "userinfo": parts.userinfo,
        "host": parts.host, "port": parts.port, "path": path, "query": query})
    result = frame.select(
        pl.when(pl.col("invalid")).then(None).otherwise(pl.concat_str([
            pl.col("scheme"), pl.lit("://"),
            pl.when(pl.col("userinfo").is_not_null()).then(pl.col("userinfo") + "@")
            .otherwise(pl.lit("")),
            pl.col("host"), pl.col("port"),
            pl.when(pl.col("path") == "").then(pl.lit("/")).otherwise(pl.col("path")),
            pl.when(pl.col("query").fill_null("") == "").then(pl.lit(""))
            .otherwise(pl.lit("?") + pl.col("query")),
        ])).alias(urls.name or "url"))
    return result.to_series()


def canonical_hosts(urls: pl.Series) -> pl.Series:
    """The canonical host of each URL; null where a value is not a URL.

    Equal to ``hosts_of(canonicalize_urls(urls))`` without building canonical paths: host,
    domain and the first step of prefix rules need no more. A compiled scan over the Arrow
    buffers handles the common shape (ASCII, no user info, no IPv6 literal, nothing to strip);
    the other rows take the general column path.
    """
    text = urls.cast(pl.String)
    offsets, data, nulls = string_buffers(text.to_arrow())
    out_data, out_offsets, status = _scan_hosts()(data, offsets, nulls)
    hosts = pl.Series(pa.LargeStringArray.from_buffers(
        len(status), pa.py_buffer(out_offsets), pa.py_buffer(out_data)))
    hosts = pl.select(pl.when(pl.Series(status == 0)).then(hosts)).to_series()
    slow = np.flatnonzero(status == 2)
    if len(slow):
        parts = _split_columns(text.gather(slow))
        general = pl.select(pl.when(parts.invalid).then(None).otherwise(parts.host)).to_series()
        hosts = hosts.scatter(slow, general)
    return hosts.alias(urls.name or "host")


def _scan_hosts_py(data, offsets, nulls):  # type: ignore[no-untyped-def]
    """Host bytes per row, lower-cased, trailing dots dropped; status 0 = done, 1 = not a URL,
    2 = needs the general path (whitespace or non-ASCII at an end, non-ASCII or '@' or '['
    in the authority)."""
    n = len(offsets) - 1
    status = np.zeros(n, dtype=np.int8)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    out = np.empty(max(len(data), 1), dtype=np.uint8)
    used = 0
    for row in range(n):
        out_offsets[row] = used
        if nulls[row]:
            status[row] = 1
            continue
        start, stop = offsets[row], offsets[row + 1]
        if stop == start:
            status[row] = 1
            continue
        first, last = data[start], data[stop - 1]
        if first <= 32 or last <= 32 or first >= 128 or last >= 128:
            status[row] = 2  # stripping and control characters: the general path decides
            continue
        control = 0
        for k in range(start, stop):  # no early exit: the loop vectorises
            c = data[k]
            control |= (c < 32) | (c == 127)
        if control:
            status[row] = 1
            continue
        bad = False
        sep = -1
        for k in range(start, stop - 2):
            if data[k] == 58 and data[k + 1] == 47 and data[k + 2] == 47:  # "://"
                sep = k
                break
        if sep <= start:
            status[row] = 1
            continue
        c = data[start]
        if not ((65 <= c <= 90) or (97 <= c <= 122)):
            status[row] = 1
            continue
        for k in range(start + 1, sep):
            c = data[k]
            if not ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57)
                    or c == 43 or c == 46 or c == 45):
                bad = True
                break
        if bad:
            status[row] = 1
            continue
        begin = sep + 3
        end = begin
        while end < stop and data[end] != 47 and data[end] != 63 and data[end] != 35:
            end += 1
        colon = -1
        for k in range(begin, end):
            c = data[k]
            if c == 64 or c == 91 or c >= 128:  # '@', '[', non-ASCII
                bad = True
                break
            if c == 58 and colon < 0:
                colon = k
        if bad:
            status[row] = 2
            continue
        host_end = colon if colon >= 0 else end
        if colon >= 0:
            for k in range(colon + 1, end):
                c = data[k]
                if c < 48 or c > 57:
                    bad = True
                    break
            if bad:
                status[row] = 1
                continue
        while host_end > begin and data[host_end - 1] == 46:
            host_end -= 1
        if host_end == begin:
            status[row] = 1
            continue
        for k in range(begin, host_end):
            c = data[k]
            out[used] = c + 32 if 65 <= c <= 90 else c
            used += 1
    out_offsets[n] = used
    return out[:used].copy(), out_offsets, status


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


def _canonical_hosts(hosts: pl.Series) -> pl.Series:
    """Empty hosts become null; non-ASCII hosts go through IDNA, once per distinct host."""
    hosts = pl.select(pl.when(hosts == "").then(None).otherwise(hosts)).to_series()
    return map_distinct(hosts, canonical_host, where=hosts.str.contains(r"[^\x00-\x7f]"))


def _resolve_dot_segments(paths: pl.Series) -> pl.Series:
    """Dot segments resolved, once per distinct path that has one (they are rare)."""
    return map_distinct(paths, remove_dot_segments,
                        where=paths.str.contains(r"(^|/)\.\.?(/|$)"))


def hosts_of(canonical: pl.Series) -> pl.Series:
    """The host of each canonical URL (null stays null)."""
    return canonical.str.extract(r"^[a-z][a-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1)


def registrable_domains(hosts: pl.Series) -> pl.Series:
    """:func:`registrable_domain` over a column of canonical hosts, once per distinct host."""
    return map_distinct(hosts, registrable_domain)


_SCAN = None


def _scan_hosts():  # type: ignore[no-untyped-def]
    """The numba-compiled host scan, built on first use."""
    global _SCAN
    if _SCAN is None:
        import numba

        _SCAN = numba.njit(nogil=True)(_scan_hosts_py)
    return _SCAN
