"""URL canonicalisation and the keys derived from a URL (host, registrable domain).

Opt-out registries and takedown requests name URLs in whatever spelling their authors had; the
dataset stores URLs as crawled. Both sides are brought to one canonical form before comparing:
what a WHATWG URL parser (the one browsers use; here ada, the parser of Node.js) yields for the
special schemes, plus the leniencies of the Python downloaders LAION copies are made with
(``urllib.request``, ``requests``), plus RFC 3986 normalisation of the path and query. Any two
spellings that a browser or a downloader fetches as the same resource get one form; spellings
of different resources keep different forms. The rules, in this order:

1. Characters that are not text (a lone surrogate) make a value no URL. C0 controls, space and
   Unicode whitespace are stripped at both ends; urllib's wrappers ``<...>`` and ``URL:`` are
   removed; tabs and newlines are removed anywhere.
2. Only ``http``, ``https``, ``ftp``, ``ws`` and ``wss`` URLs (any case) are URLs here; anything
   else (no scheme, ``data:``, ``file:``, ``s3:``...) canonicalises to null and is counted
   unmatchable.
3. The URL is parsed as WHATWG specifies for these schemes: backslashes count as slashes,
   ``https:host``, ``https:/host`` and ``https:///host`` read as ``https://host``, user
   information (``user:pass@``, up to the last ``@``) is dropped, the host is percent-decoded,
   IDNA-mapped (UTS 46: case, full-width and ideographic full stops, punycode) and IPv4
   (``3325668414``, ``0xc6.0x39.0xac.0x3e``...) and IPv6 addresses are written canonically. A
   URL the parser refuses (a forbidden host character, an empty host...) is null, except that
   an http(s) port Python's ``int()`` reads (``:+443``, ``:4_43``, ``:٤٤٣``), as urllib does,
   is read as that number.
4. Trailing dots of the host are dropped (after mapping, so ``host。`` is ``host``).
5. The port is dropped when it is the scheme's default (http/ws 80, https/wss 443, ftp 21) or
   empty; a port above 65535 makes a value null.
6. In the path and the query, percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``)
   are decoded, every other escape gets upper-case hex, and characters that may not appear raw
   (controls, non-ASCII as UTF-8, space, ``"<>\\^`{|}``, and ``'`` in the query) are
   percent-encoded.
7. Dot segments (``.``, ``..``, ``%2e``...) of the path are resolved; an empty path becomes ``/``.
8. The fragment is dropped; an empty query (a bare ``?``) is dropped. Query parameters keep their
   order and spelling, paths their case, ``%2F`` stays apart from ``/`` (these can change what
   a server returns).

:data:`URL_FORM` numbers this set of rules: digests of canonical URLs, hosts and domains made
under another number may differ for some spellings (see :mod:`scrub.lists.store`).

:func:`canonical_url` is the reference, one URL at a time (ada for the parse, then rules 4-8).
:func:`canonicalize_urls` does the same to a whole polars column: URLs that are canonical
already are kept as they are, URLs of a plain shape (``scheme://host[:digits]/...`` in ASCII
structure, no controls or backslashes) are parsed with vectorised string operations (hosts
once per distinct host, through the same :func:`canonical_host`), and the few others are given
to the reference once per distinct value. Property tests check that both agree on any input.

Derived keys: :func:`url_host` (canonical host, without port), :func:`registrable_domain`
(the host's registrable domain, "eTLD+1", from the public suffix list bundled with tldextract,
private section included, as browsers use it; never fetched from the network) and
:func:`host_suffixes` (every parent domain of a host, what domain rules match).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from ada_url import parse_url as _ada_parse_url

from scrub.keys import string_buffers

if TYPE_CHECKING:
    import tldextract

#: The version of the canonical form (the rules above). Stored digests of canonical URLs,
#: hosts and domains record it; bump it whenever some input canonicalises differently.
URL_FORM = 2
#: The schemes that are URLs here (WHATWG's special schemes but ``file``) and their ports.
DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21", "ws": "80", "wss": "443"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: Stripped at both ends (rule 1): what WHATWG strips (C0 controls, space) and what Python's
#: ``str.strip()`` strips (urllib's ``unwrap``).
_EDGE = "".join(map(chr, range(0x21))) + "\x85\xa0\u1680" + "".join(
    map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
#: What must be percent-encoded in a path, and in a query (rule 6).
_ESCAPE_PATH = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]")
_ESCAPE_QUERY = re.compile(r"[^\x21-\x7e]|[\"'<>\\^`{|}]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_ADA_PARTS = ("protocol", "hostname", "port", "pathname", "search")


# ---------------------------------------------------------------------------------------------
# Reference implementation, one URL at a time.


def canonical_url(url: str) -> str | None:
    """The canonical form of ``url``, or None when it is not a URL (see the module's rules)."""
    parts = _whatwg(url)
    if parts is None:
        return None
    scheme, host, port, path, query = parts
    path = normalize_percent(path) or "/"
    query = normalize_percent(query, query=True)
    return (f"{scheme}://{host}{':' + port if port else ''}{path}"
            f"{'?' + query if query else ''}")


def _whatwg(url: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme, host, port, path, query)`` of a URL by rules 1-5: host and port canonical
    (``port`` is "" for the default), path and query as the WHATWG parser serialises them
    (without ``?``); None when it is not a URL."""
    text = _unwrapped(url)
    if text is None:
        return None
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match is not None else ""
    if scheme not in DEFAULT_PORTS:
        return None
    parts = _ada(text)
    if parts is None and scheme in ("http", "https"):
        lenient = _urllib_port(text)
        parts = _ada(lenient) if lenient is not None else None
    if parts is None:
        return None
    scheme, host, port, path, query = parts
    host = _undotted(host)  # type: ignore[assignment]
    if host is None:
        return None
    return scheme, host, port, path, query


def _undotted(host: str) -> str | None:
    """A parsed host without trailing dots (rule 4), parsed again when it had some: what is
    left may end in a number (``0x1..``), which makes it an IPv4 address or no host."""
    stripped = host.rstrip(".")
    if stripped == host or not stripped:
        return stripped or None
    return canonical_host(stripped)


def _unwrapped(url: str) -> str | None:
    """Rule 1: ends stripped, urllib's wrappers removed, tabs and newlines removed; None for a
    value that is not text (a lone surrogate)."""
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            return None
    text = url.strip(_EDGE)
    if text[:1] == "<" and text[-1:] == ">":  # urllib.parse.unwrap, as urlopen applies it
        text = text[1:-1].strip(_EDGE)
    if text[:4] == "URL:":
        text = text[4:].strip(_EDGE)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    return text


def _ada(text: str) -> tuple[str, str, str, str, str] | None:
    """``(scheme, hostname, port, pathname, query)`` as the WHATWG parser (ada) gives them for
    a special URL; None when it refuses the URL."""
    try:
        parts = _ada_parse_url(text, _ADA_PARTS)
    except ValueError:
        return None
    return (parts["protocol"][:-1], parts["hostname"], parts["port"], parts["pathname"],
            parts["search"][1:])


def _urllib_port(text: str) -> str | None:
    """``text`` with its port written in ASCII digits when urllib's http handler reads it as a
    number although WHATWG refuses it (``int()`` takes ``+443``, ``4_43``, non-ASCII digits,
    surrounding spaces, and the authority is percent-decoded first); None otherwise.

    As urllib reads it: the authority follows ``scheme://`` up to the first ``/``, ``?`` or
    ``#``, and the port follows its last ``:`` after any ``]``. urllib passes user information
    on to the host lookup (it fetches nothing then), so an authority with ``@`` is refused."""
    scheme, sep, rest = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme + ":"):
        return None
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    if "@" in rest[:end]:
        return None
    hostport = unquote(rest[:end])
    colon = hostport.rfind(":")
    if colon <= hostport.rfind("]"):
        return None
    host = hostport[:colon]
    try:
        port = int(hostport[colon + 1:])
    except ValueError:
        return None
    bracketed = host[:1] == "[" and host[-1:] == "]"
    if not 0 <= port <= 65535 or any(ch in host for ch in "/\\?#@%") or (
            ":" in host and not bracketed):
        return None
    return f"{scheme}://{host}:{port}{rest[end:]}"


@functools.lru_cache(maxsize=1 << 16)
def canonical_host(host: str) -> str | None:
    """A host as rules 3-4 make it (percent-decoded, IDNA-mapped, IPv4/IPv6 canonical, no
    trailing dot); None when the WHATWG parser refuses it, it is empty, or it holds a character
    that would end a host in a URL (``/ \\ ? # @``, ``:`` outside brackets)."""
    if not host or any(ch in host for ch in "/\\?#@") or (
            ":" in host and not (host[:1] == "[" and host[-1:] == "]")):
        return None
    try:
        parsed = _ada_parse_url(f"http://{host}/", ("hostname",))
    except ValueError:
        return None
    return _undotted(parsed["hostname"])


def normalize_percent(text: str, *, query: bool = False) -> str:
    """Rule 6 on a path (or, with ``query``, a query): decode escapes of unreserved characters,
    upper-case the others, escape what may not appear raw."""
    if "%" in text:
        text = _PERCENT.sub(_unescape_match, text)
    escape = _ESCAPE_QUERY if query else _ESCAPE_PATH
    return escape.sub(_escape_match, text) if escape.search(text) else text


def _unescape_match(match: re.Match[str]) -> str:
    value = int(match.group(1), 16)
    return chr(value) if value in _UNRESERVED else f"%{value:02X}"


def _escape_match(match: re.Match[str]) -> str:
    return _escape_char(match.group())


@functools.lru_cache(maxsize=65536)
def _escape_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve ``.`` and ``..`` segments of a path (on paths that
    start with ``/``, what WHATWG does once ``%2e`` is decoded)."""
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
    parts = _whatwg(url)
    return parts[1] if parts is not None else None


def url_series(values: pl.Series | Sequence[str | None]) -> pl.Series:
    """Values as a polars String column. A value that is not text (a string holding a lone
    surrogate, which UTF-8 cannot encode) becomes null, as :func:`canonical_url` makes it: no
    URL, counted unmatchable, never an exception."""
    if isinstance(values, pl.Series):
        return values.cast(pl.String)
    values = list(values)
    try:
        return pl.Series(values, dtype=pl.String)
    except UnicodeEncodeError:
        return pl.Series([v if v is None or _encodable(v) else None for v in values],
                         dtype=pl.String)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


#: A host the column path lower-cases itself: ASCII labels of letters, digits, ``-_~`` (then
#: the WHATWG parser only lower-cases it), trailing dots aside...
_PLAIN_HOST = r"^[A-Za-z0-9_~\-]+(?:\.[A-Za-z0-9_~\-]+)*\.*$"
#: ...unless a label is punycode (the parser checks it) or the last label is a number (the
#: host is an IPv4 address, which the parser rewrites).
_PARSED_HOST = r"(?i)(?:^|\.)(?:xn--|[0-9]+\.*$|0x[0-9a-f]*\.*$)"

#: Row states of :func:`_parse`.
_OK, _NOT_URL, _GENERAL = 0, 1, 2


def _parse(urls: pl.Series) -> pl.DataFrame:
    """Rules 1-5 over a whole column, for URLs of a plain shape.

    Columns: ``state`` (``_OK``; ``_NOT_URL``; ``_GENERAL``: a shape left to the reference,
    such as controls, backslashes, wrappers, ``https:host``, IPv6 or a port that is not ASCII
    digits), ``scheme`` (lower case), ``host`` (canonical), ``port`` ("" or ":NNNN",
    canonical), and raw ``path`` and ``query``. Per row, literal splits; the authorities are
    worked out once per distinct authority (:func:`_authorities`).
    """
    col = pl.col
    text = col("text")
    # Unicode whitespace at the ends; what else _EDGE strips is a C0 control, which makes a
    # row odd (left to the reference), as do DEL, backslashes and urllib's wrappers
    stripped = urls.cast(pl.String).str.strip_chars()
    parsed = (
        pl.LazyFrame({"text": stripped, "odd": _rows_holding(stripped, backslash=True)})
        .with_columns(
            odd=col("odd") | text.str.starts_with("<").fill_null(False)
            | text.str.starts_with("URL:").fill_null(False),
            scheme=_before(text, ":").str.to_lowercase(),
            rest=_after(text, ":"))
        .with_columns(special=(col("scheme").is_in(list(DEFAULT_PORTS))
                               & col("rest").is_not_null()).fill_null(False),
                      after=col("rest").str.slice(2))
        .with_columns(
            shape=~col("rest").str.starts_with("//").fill_null(False)
            | col("after").str.starts_with("/").fill_null(False),
            after=_before(col("after"), "#"))
        .with_columns(before_query=_before(col("after"), "?"), query=_after(col("after"), "?"))
        .select(
            "odd", "special", "shape", "scheme", "query",
            _before(col("before_query"), "/").alias("authority"),
            pl.when(_after(col("before_query"), "/").is_null()).then(pl.lit(""))
            .otherwise(pl.lit("/") + _after(col("before_query"), "/")).alias("path"))
        .collect())
    index, distinct = _distinct(parsed["authority"])
    table = _authorities(pl.Series(distinct, dtype=pl.String))
    table = pl.concat([table, pl.DataFrame(  # the last row: values without an authority
        {"host": [None], "digits": [None], "state": [_NOT_URL]}, schema=table.schema)])
    parsed = parsed.hstack(table[np.where(index < 0, len(table) - 1, index)]
                           .rename({"state": "authority_state"}))
    default = col("scheme").replace_strict(DEFAULT_PORTS, default=None, return_dtype=pl.String)
    return (parsed.lazy()
        .select(
            pl.when(col("odd")).then(pl.lit(_GENERAL))
            .when(~col("special")).then(pl.lit(_NOT_URL))
            .when(col("shape")).then(pl.lit(_GENERAL))
            .otherwise(col("authority_state")).cast(pl.UInt8).alias("state"),
            "scheme", "host",
            pl.when(col("digits").is_null() | (col("digits") == default)).then(pl.lit(""))
            .otherwise(pl.lit(":") + col("digits")).alias("port"),
            "path", "query").collect())


def _rows_holding(text: pl.Series, *, backslash: bool = False,
                  buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> np.ndarray:
    """Which values hold a C0 control or DEL (or, with ``backslash``, a backslash): one scan
    of the column's bytes (a regex character class costs three times as much). ``buffers``:
    the column's :func:`~scrub.keys.string_buffers`, when at hand."""
    offsets, data, _ = buffers if buffers is not None else string_buffers(text.to_arrow())
    rows = np.zeros(len(text), dtype=bool)
    if len(offsets) < 2 or offsets[-1] == offsets[0]:
        return rows
    data = data[offsets[0]:offsets[-1]]
    found = (data < 32) | (data == 127)
    if backslash:
        found |= data == 92
    rows[np.searchsorted(offsets, np.flatnonzero(found) + offsets[0], side="right") - 1] = True
    return rows


def _authorities(authorities: pl.Series) -> pl.DataFrame:
    """Rules 3-5 on distinct authorities (what follows a special ``scheme://`` up to the first
    ``/``, ``?`` or ``#``): ``host`` (canonical), ``digits`` (the port without leading zeros,
    null when there is none) and ``state``. User information ends at the last ``@``; a host
    that is plain ASCII (:data:`_PLAIN_HOST`) is lower-cased here, any other goes through
    :func:`canonical_host` once. Brackets (IPv6), ports that are not ASCII digits and hosts
    with escapes that the parser refuses (urllib may take ``h%3A443``) are ``_GENERAL``."""
    col = pl.col
    table = (
        pl.LazyFrame({"authority": authorities})
        .select(col("authority").str.replace(r"^.*@", "").alias("hostport"))
        .with_columns(host=_before(col("hostport"), ":"), port=_after(col("hostport"), ":"))
        .with_columns(
            bracket=col("hostport").str.contains_any(["[", "]"]),
            plain=(col("host").str.contains(_PLAIN_HOST)
                   & ~col("host").str.contains(_PARSED_HOST)),
            present=col("port").is_not_null() & (col("port") != ""),
            digits=col("port").str.strip_chars_start("0"))
        .select(
            "host", "plain",
            pl.when(~col("present")).then(None).when(col("digits") == "").then(pl.lit("0"))
            .otherwise(col("digits")).alias("digits"),
            pl.when(col("bracket") | (col("present") & ~col("port").str.contains(r"^[0-9]+$")))
            .then(pl.lit(_GENERAL))
            .when(col("present") & ((col("digits").str.len_bytes() > 5)
                                    | (col("digits").cast(pl.Int64, strict=False) > 65535)))
            .then(pl.lit(_NOT_URL)).otherwise(pl.lit(_OK)).cast(pl.UInt8).alias("state"))
        .with_columns(host=pl.when(col("plain")).then(
            col("host").str.to_lowercase().str.strip_chars_end(".")).otherwise(col("host")))
        .collect())
    parse = (table["state"] == _OK) & ~table["plain"]
    if parse.any():  # other hosts (IDN, escapes, IPv4...)
        hosts = map_distinct(table["host"], canonical_host, where=parse)
        failed = parse & hosts.is_null()
        ask = failed & table["host"].str.contains("%", literal=True)
        table = table.with_columns(
            hosts, pl.when(ask).then(pl.lit(_GENERAL)).when(failed).then(pl.lit(_NOT_URL))
            .otherwise(table["state"]).cast(pl.UInt8).alias("state"))
    return table.select("host", "digits", "state")


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


def canonicalize_urls(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """:func:`canonical_url` over a whole column; null where a value is not a URL.

    URLs that are canonical already are kept; the others go through :func:`_parse` with
    literal splits over whole columns, and rare shapes get per-value work on just those rows
    (once per distinct host, path or URL). Escapes are rewritten with a table of just the
    escapes and unsafe characters that occur: building one of all ~900 spellings costs more
    than the rewriting.
    """
    name = (urls.name if isinstance(urls, pl.Series) else "") or "url"
    text = url_series(urls)
    simple = pl.select(pl.lit(text).str.contains(_ALREADY_CANONICAL)
                       & ~pl.lit(text).str.contains(_DOT_SEGMENT)).to_series().fill_null(False)
    if simple.all():
        return text.alias(name)
    if simple.any():
        rows = (~simple).arg_true()
        return text.scatter(rows, _canonicalize(text.gather(rows))).alias(name)
    return _canonicalize(text).alias(name)


#: An escape in canonical form: upper-case hex of a byte that is no unreserved character
#: (those, ``- . 0-9 A-Z _ a-z ~``, are decoded), so ``%20`` and ``%2F`` are kept as written.
_CANONICAL_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
#: URLs that are their own canonical form: a URL scheme and a host in lower case (no trailing
#: dot, no port, no user info), a path and an optional non-empty query of characters that
#: need no escaping and escapes in canonical form, no fragment; and (checked apart) no dot
#: segment. The host's labels hold no "--" (so no punycode, which the parser checks) and its
#: last label starts with a letter (so it is no IPv4 address, which the parser rewrites). Most
#: URLs of a real dataset are like this and skip the column pipeline.
_ALREADY_CANONICAL = (r"^(?:https?|wss?|ftp)://(?:[a-z0-9_~]+(?:-[a-z0-9_~]+)*\.)*"
                      r"[a-z][a-z0-9_~]*(?:-[a-z0-9_~]+)*"
                      r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|" + _CANONICAL_ESCAPE + r")*"
                      r"(?:\?(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|" + _CANONICAL_ESCAPE + r")+)?$")
_DOT_SEGMENT = r"/\.\.?(?:[/?]|$)"


def _canonicalize(urls: pl.Series) -> pl.Series:
    parts = _parse(urls)
    col = pl.col
    both = pl.concat([col("path"), col("query")]).drop_nulls()
    found = parts.lazy().select(
        both.filter(both.str.contains("%", literal=True))
        .str.extract_all(r"%[0-9A-Fa-f]{2}").explode().drop_nulls().unique().implode()
        .alias("escapes"),
        both.str.extract_all(_ESCAPE_PATH.pattern).explode().drop_nulls().unique().implode()
        .alias("unsafe"),
        col("query").str.contains("'", literal=True).any().alias("quote"),
    ).collect()
    escapes = [e for e in found["escapes"][0].to_list() if e in _PERCENT_TABLE]
    unsafe = found["unsafe"][0].to_list()

    def normalized(part: pl.Expr, extra: list[str]) -> pl.Expr:
        if escapes:
            part = part.str.replace_many(escapes, [_PERCENT_TABLE[e] for e in escapes])
        if unsafe or extra:
            chars = unsafe + extra
            part = part.str.replace_many(chars, [_escape_char(ch) for ch in chars])
        return part

    parts = parts.lazy().with_columns(
        path=normalized(col("path"), []),
        query=normalized(col("query"), ["'"] if found["quote"][0] else [])).collect()
    dots = parts["path"].str.contains(r"(^|/)\.\.?(/|$)").fill_null(False)
    if dots.any():
        parts = parts.with_columns(map_distinct(parts["path"], remove_dot_segments, where=dots))
    out = parts.select(
        pl.when(col("state") != _OK).then(None).otherwise(pl.concat_str([
            col("scheme"), pl.lit("://"), col("host"), col("port"),
            pl.when(col("path") == "").then(pl.lit("/")).otherwise(col("path")),
            pl.when(col("query").fill_null("") == "").then(pl.lit(""))
            .otherwise(pl.lit("?") + col("query")),
        ])).alias(urls.name or "url")).to_series()
    general = parts["state"] == _GENERAL
    if general.any():  # the shapes left to the reference, once per distinct value
        out = out.scatter(general.arg_true(),
                          map_distinct(urls, canonical_url, where=general).filter(general))
    return out


def canonical_hosts(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """The canonical host of each URL; null where a value is not a URL.

    Equal to ``hosts_of(canonicalize_urls(urls))`` without building canonical paths (see
    :func:`host_table`, which this spells out row by row).
    """
    codes, distinct = host_table(urls)
    name = (urls.name if isinstance(urls, pl.Series) else "") or "host"
    return hosts_at(codes, distinct).alias(name)


def hosts_at(codes: np.ndarray, distinct: pl.Series) -> pl.Series:
    """The hosts of a :func:`host_table`, one per row (null where the code is -1)."""
    index = pl.Series(codes, dtype=pl.Int64)
    return distinct.gather(pl.select(pl.when(index >= 0).then(index)).to_series())


def host_table(urls: pl.Series | Sequence[str | None]) -> tuple[np.ndarray, pl.Series]:
    """Canonical hosts as ``(codes, distinct)``: ``distinct`` holds each host once and
    ``codes`` (int64, one per row) indexes into it, -1 where a value is not a URL.

    Hosts repeat a lot, so host rules look up each distinct host once and mark rows by code
    (a gather) instead of comparing strings row by row. Per row there is one literal split
    (``scheme:``, ``""``, authority) and a byte scan for controls; everything
    else is worked out once per distinct scheme and per distinct authority (results are
    cached across calls). Other shapes (whitespace or non-ASCII at an end, controls,
    ``https:host``, authorities with a backslash, IPv6 or a port that is not ASCII digits...)
    take :func:`_parse` and, for what it leaves, the reference.
    """
    text = url_series(urls)
    offsets, data, nulls = buffers = string_buffers(text.to_arrow())
    starts, ends = offsets[:-1], offsets[1:]
    odd = _rows_holding(text, buffers=buffers)
    if len(data):  # whitespace or non-ASCII at an end: maybe stripped
        first = data[np.minimum(starts, len(data) - 1)]
        last = data[np.maximum(ends - 1, 0)]
        odd |= (ends > starts) & ((first <= 32) | (first >= 128) | (last <= 32)
                                  | (last >= 128))
    col = pl.col
    parts = (pl.LazyFrame({"u": text})
             .select(col("u").str.split_exact("/", 2).alias("p"))
             .select(col("p").struct.field("field_0").alias("scheme"),
                     col("p").struct.field("field_1").alias("empty"),
                     col("p").struct.field("field_2").alias("authority"))
             .collect())
    schemes = [v for v in parts["scheme"].unique().drop_nulls().to_list()
               if v.endswith(":") and v[:-1].lower() in DEFAULT_PORTS]
    fast = (parts.lazy().select(col("scheme").is_in(schemes) & (col("empty") == ""))
            .collect().to_series().fill_null(False).to_numpy()) & ~odd
    found: dict[str, int] = {}
    index, authorities = _distinct(parts["authority"])
    index = np.where(fast, index, -1)
    hosts = [_host_of_authority(a) for a in authorities]
    asks = np.array([h is _ASK for h in hosts] + [False])
    codes = _codes_of([None if h is _ASK else h for h in hosts], found)[index]  # type: ignore
    rows = np.flatnonzero((~fast & ~nulls) | asks[index])
    if len(rows):
        index, distinct = _distinct(_parsed_hosts(text.gather(rows)))
        codes[rows] = _codes_of(distinct, found)[index]
    return codes, pl.Series(list(found), dtype=pl.String)


def _parsed_hosts(urls: pl.Series) -> pl.Series:
    """``hosts_of(canonicalize_urls(urls))`` without the paths: :func:`_parse`'s hosts, and
    :func:`url_host` once per distinct value of the shapes it leaves to the reference."""
    parts = _parse(urls)
    hosts = pl.select(pl.when(pl.lit(parts["state"]) == _OK).then(pl.lit(parts["host"]))
                      ).to_series()
    general = parts["state"] == _GENERAL
    if general.any():
        hosts = hosts.scatter(general.arg_true(),
                              map_distinct(urls, url_host, where=general).filter(general))
    return hosts


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


#: What :func:`_host_of_authority` says of an authority it leaves to :func:`canonicalize_urls`.
_ASK = object()


@functools.lru_cache(maxsize=1 << 18)
def _host_of_authority(rest: str) -> str | None | object:
    """The canonical host in what follows a special ``scheme://`` up to the next ``/`` (as
    :func:`canonical_url` reads it), None when that is not a URL, or ``_ASK`` for the shapes
    :func:`_parse` leaves to the reference (no authority, a backslash, brackets, a port that
    is not ASCII digits, a host with escapes that the parser refuses)."""
    authority = rest.split("#", 1)[0].split("?", 1)[0]
    if not authority or any(ch in authority for ch in "\\[]"):
        return _ASK
    host, colon, port = authority.rpartition("@")[2].partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return _ASK
    if port and int(port) > 65535:
        return None
    found = canonical_host(host)
    return _ASK if found is None and "%" in host else found


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


#: Characters a path segment keeps as they are in canonical form (rule 6: unreserved
#: characters, sub-delimiters, ":" and "@"); a segment of only these is already canonical.
_PLAIN_SEGMENT = r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$"
#: Deleting this leaves a URL's last path segment and what follows it (its query and
#: fragment), or, when the URL has no path (its authority runs to a "?", a "#" or the end),
#: nothing at all.
_BEFORE_TAIL = r"(?s)^(?:[^?#/]*//[^?#/]*(?:[?#].*)?$|[^?#]*/)"
#: URLs whose raw shape :data:`_BEFORE_TAIL` reads as WHATWG does: ``scheme://`` and a
#: non-empty authority (checked apart: no backslash, tab or newline anywhere; the parser
#: reads ``https:host``, ``https:///host``, ``host\\x.jpg``... otherwise; other controls
#: there make the URL no URL).
_TAIL_SHAPE = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/\\?#]"


def _last_segments(urls: pl.Series) -> pl.Series:
    """What follows the last "/" before each URL's query or fragment, up to its "?" (a "#"
    before it is left in). One regex without capture groups (which would take the slower
    engine) and one literal split."""
    return (pl.DataFrame({"url": urls}).select(
        pl.col("url").str.replace(_BEFORE_TAIL, "").str.split_exact("?", 1)
        .struct.field("field_0")).to_series())


def url_tails(urls: pl.Series | Sequence[str | None]) -> pl.Series:
    """For each URL, the last segment of its canonical path ("" when the path ends with "/");
    for a value that is not a URL, some string of no consequence (or null).

    Equal to the last segment of :func:`canonicalize_urls` for every URL (tested), without
    canonicalising the URLs of a plain shape (:data:`_TAIL_SHAPE`) whose raw last segment is
    plain: rule 6 leaves such a segment as it is, rule 7 only changes the last segment when
    it is "." or ".." (it becomes ""), and no other rule touches it. The others (escapes,
    spaces, non-ASCII, other shapes...) are canonicalised first. Incremental release rebuilds
    use it to rule out shards that cannot hold a listed URL (see :mod:`scrub.release.probe`).
    """
    name = (urls.name if isinstance(urls, pl.Series) else "") or "tail"
    text = url_series(urls)
    tails = _last_segments(text)
    fragments = tails.str.contains("#", literal=True).fill_null(False).arg_true()
    if len(fragments):  # a "#" before any "?": cut there too (the fragment holds the rest)
        tails = tails.scatter(fragments, tails.gather(fragments).str.split_exact("#", 1)
                              .struct.field("field_0"))
    frame = pl.DataFrame({"tail": tails, "text": text}).with_columns(
        pl.when(pl.col("tail").is_in([".", ".."])).then(pl.lit("")).otherwise(pl.col("tail"))
        .alias("tail"),
        plain=pl.col("tail").str.contains(_PLAIN_SEGMENT).fill_null(True),
        shaped=(pl.col("text").str.contains(_TAIL_SHAPE)
                & ~pl.col("text").str.contains(r"[\\\t\n\r]")).fill_null(True))
    tails = frame["tail"]
    rows = (~frame["plain"] | ~frame["shaped"]).arg_true()
    if len(rows):
        slow = tails.gather(rows)
        escaped = (slow.str.contains(_ESCAPED_SEGMENT)
                   & frame["shaped"].gather(rows)).fill_null(False)
        fixed = slow
        some = escaped.arg_true()
        if len(some):  # plain but for escapes (file names with %20...): rule 6 on the segment
            normal = _normalize_escapes(slow.gather(some))
            fixed = fixed.scatter(some, pl.select(
                pl.when(pl.lit(normal).is_in([".", ".."])).then(pl.lit(""))
                .otherwise(pl.lit(normal))).to_series())
        other = (~escaped).arg_true()
        if len(other):  # spaces, non-ASCII, other shapes...: the whole URL is canonicalised
            fixed = fixed.scatter(other, _last_segments(
                canonicalize_urls(text.gather(rows.gather(other)))))
        tails = tails.scatter(rows, fixed)
    return tails.alias(name)


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
