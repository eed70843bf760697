"""The reference canonical form, one URL at a time: ada (WHATWG) for the parse, then the
rules of docs/design/urls.md (numbered there); plus the derived host and registrable domain."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote

import polars as pl
from ada_url import parse_url as _ada_parse_url

if TYPE_CHECKING:
    import tldextract

#: The version of the canonical form (the rules of docs/design/urls.md). Stored digests of
#: canonical URLs, hosts and domains record it; bump it whenever some input canonicalises
#: differently.
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


def canonical_url(url: str) -> str | None:
    """The canonical form of ``url``, or None when it is not a URL (rules: docs/design/urls.md)."""
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
    scheme, dotted, port, path, query = parts
    host = _undotted(dotted)
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
    import tldextract  # here: it imports requests, which most commands never need

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

