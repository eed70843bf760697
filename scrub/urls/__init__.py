"""URL canonicalisation and the keys derived from a URL (host, registrable domain, suffixes).

Registries, takedown requests and datasets spell URLs differently; both sides are brought to
one canonical form (what a WHATWG parser and Python's downloaders fetch, plus RFC 3986 path and
query normalisation) before comparing. The numbered rules, and why, are in docs/design/urls.md.
:func:`canonical_url` is the reference, one URL at a time; the column functions are equal to
it on every value (property-tested) and vectorised.
"""

from scrub.urls._columns import canonicalize_urls, decode_unreserved_escapes, map_distinct
from scrub.urls._domains import (
    host_suffixes,
    icann_public_suffix,
    plain_icann_public_suffixes,
    plainly_registrable,
    registrable_domains,
)
from scrub.urls._hosts import canonical_hosts, encode_hosts, host_table, hosts_at, hosts_of
from scrub.urls._reference import (
    DEFAULT_PORTS,
    URL_FORM,
    canonical_host,
    canonical_url,
    normalize_percent,
    registrable_domain,
    remove_dot_segments,
    url_host,
    url_series,
)
from scrub.urls._tails import url_tails

__all__ = [
    "DEFAULT_PORTS",
    "URL_FORM",
    "canonical_host",
    "canonical_hosts",
    "canonical_url",
    "canonicalize_urls",
    "decode_unreserved_escapes",
    "encode_hosts",
    "host_suffixes",
    "host_table",
    "hosts_at",
    "hosts_of",
    "icann_public_suffix",
    "map_distinct",
    "normalize_percent",
    "plain_icann_public_suffixes",
    "plainly_registrable",
    "registrable_domain",
    "registrable_domains",
    "remove_dot_segments",
    "url_host",
    "url_series",
    "url_tails",
]
