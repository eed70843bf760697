"""Hash and key types, one class each, in a registry.

After python-threatexchange's signal types: a type has a ``name``, normalises a value or rejects it
with a reason (never with the value itself: lists can be sensitive), carries example values that the
shared test base checks, and says which dataset column it is matched against.

A type's ``target`` names the column role it matches (see ``scrub.dataset``): ``md5``/``sha1``/
``sha256`` for hashes of image bytes, ``url`` for hashes of the URL. ``url_digest`` names the digest
applied to the URL before comparing. The types live in ``_digest_types``, ``_url_types``,
``_row_types`` and ``_captions``; they are registered here, in a fixed order (the order
:func:`registered_types` and :func:`inferable_by_width` list them in).
"""

from __future__ import annotations

from scrub.lists._captions import (
    DEFAULT_IGNORABLE,
    WHITESPACE_RUN,
    CaptionTerm,
    fold_terms,
    fold_text,
)
from scrub.lists._digest_types import (
    DHash,
    Md5,
    Pdq,
    PHash,
    Sha1,
    Sha256,
    UrlDigestType,
    UrlMd5,
    UrlSha1,
    UrlSha256,
)
from scrub.lists._keytype import (
    HexDigestType,
    KeyType,
    get_type,
    inferable_by_width,
    register,
    registered_types,
)
from scrub.lists._row_types import LaionHash, SampleKey
from scrub.lists._url_types import (
    Domain,
    Host,
    TextDigestType,
    Url,
    UrlPrefix,
    canonical_hostname,
    text_digest_keys,
)

for _type in (Md5, Sha1, Sha256, UrlMd5, UrlSha1, UrlSha256, Pdq, PHash, DHash, Url, Host, Domain,
              UrlPrefix, LaionHash, SampleKey, CaptionTerm):
    register(_type)
del _type

__all__ = [
    "DEFAULT_IGNORABLE", "WHITESPACE_RUN", "CaptionTerm", "DHash", "Domain", "HexDigestType",
    "Host", "KeyType", "LaionHash", "Md5", "PHash", "Pdq", "SampleKey", "Sha1", "Sha256",
    "TextDigestType", "Url", "UrlDigestType", "UrlMd5", "UrlPrefix", "UrlSha1", "UrlSha256",
    "canonical_hostname", "fold_terms", "fold_text", "get_type", "inferable_by_width",
    "register", "registered_types", "text_digest_keys",
]
