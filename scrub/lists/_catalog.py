"""The store catalog's format: list-version entries, their structural checks, and the bytes
its seal covers (the seal itself is checked by :class:`~scrub.lists.store.ListStore`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from scrub.crypto import public_key_fingerprint
from scrub.errors import ExternalSourceError, UserInputError
from scrub.lists.hashlist import ListFormat
from scrub.lists.types import get_type
from scrub.urls import URL_FORM

CATALOG_FORMAT = "scrub-catalog/2"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_FINGERPRINT = re.compile(r"^ed25519:[0-9a-f]{32}$")
_MAC_PURPOSE = "lists.catalog"
_SEAL_HINT = ("restore catalog.json from a backup; nothing of the store was used. If you changed "
              "it yourself, review it with `scrub lists ls` and reseal it with `scrub lists seal "
              "--force` (recorded)")


#: Types stored as digests of canonical text (URLs, hosts, domains): a digest made under
#: another canonical form than today's cannot be recomputed without the list's source file.
URL_DIGEST_TYPES = frozenset({"url", "host", "domain"})


def stale_url_digests(meta: ListVersion) -> bool:
    """Whether ``meta`` holds url/host/domain digests made under another canonical form than
    today's :data:`~scrub.urls.URL_FORM`. Most URLs canonicalise the same under both, but an
    entry of a changed class (user info, escapes or numbers in hosts, backslashes...) would
    match nothing: such a list is re-imported from its source file before it is used."""
    return meta.url_form != URL_FORM and any(meta.counts.get(t) for t in URL_DIGEST_TYPES)


class CatalogSealError(ExternalSourceError):
    """The catalog cannot be trusted: not sealed, its seal fails, or an entry is malformed
    (exit 3). Nothing in it was used."""


@dataclass
class ListVersion:
    """Metadata of one stored list version. Counts and digests only."""

    name: str
    version: str
    source: str
    received_at: str
    kind: str = "block"
    suppresses: list[str] = field(default_factory=list)
    terms: str = ""
    sensitive: bool = True
    format: str = ""
    file_sha256: str = ""
    signed_by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    duplicates: int = 0
    delta: bool = False
    added: int = 0
    removed: int = 0
    stored: str = ""
    #: sha256 of each stored file, by type; ``stored_sha256`` digests this mapping.
    files: dict[str, str] = field(default_factory=dict)
    stored_sha256: str = ""
    key_id: str | None = None
    #: The Ed25519 public key (hex) that verified this version; later versions must verify
    #: under it (the list is bound to its signer).
    signer_key: str | None = None
    #: A recorded exception to that binding (``--allow-unsigned``, ``--retrust``), else "".
    trust_change: str = ""
    #: The canonical form (:data:`scrub.urls.URL_FORM`) its url/host/domain digests were made
    #: under; 0 before it was recorded (see :func:`stale_url_digests`).
    url_form: int = 0

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


_FIELDS = frozenset(f.name for f in fields(ListVersion))
#: Types of the fields a catalog entry must have (the optional ones are checked by form).
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "source": str, "received_at": str, "kind": str, "suppresses": list, "terms": str,
    "sensitive": bool, "format": str, "file_sha256": str, "counts": dict, "entries": int,
    "duplicates": int, "delta": bool, "added": int, "removed": int, "files": dict,
    "stored_sha256": str, "trust_change": str, "url_form": int}


@dataclass
class _Catalog:
    """A parsed, structurally checked catalog; ``body`` is what the seal covers."""

    lists: dict[str, list[ListVersion]]
    trust: dict[str, dict[str, str]]
    seals: list[dict[str, object]]
    seal: dict[str, str] | None
    body: bytes
    legacy: bool  # read from the layout before seals (trust in trust.json)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _canonical(body: object) -> bytes:
    """The bytes the seal covers: sorted keys, no whitespace, ASCII."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def resolve_in(catalog: dict[str, list[ListVersion]], ref: str, root: Path) -> ListVersion:
    """``ref`` (``NAME``, ``NAME@latest`` or ``NAME@VERSION``) in ``catalog``; UserInputError
    naming the store ``root`` when unknown."""
    name, _, version = ref.partition("@")
    versions = catalog.get(name)
    if not versions:
        raise UserInputError(f"no list named {name!r} in the store ({root})",
                             hint="see `scrub lists ls`")
    if not version or version == "latest":
        return versions[-1]
    for meta in versions:
        if meta.version == version:
            return meta
    known = ", ".join(v.version for v in versions)
    raise UserInputError(f"list {name!r} has no version {version!r} (versions: {known})")


def _catalog_from(path: Path, lists: object, trust: object, seals: object, seal: object, *,
                  legacy: bool) -> _Catalog:
    """Check a catalog's structure: list names and versions are store names, every stored path
    is the version's own ``data/NAME/VERSION``, digests and keys are hex. Names are echoed only
    once they are known to be names."""

    def bad(problem: str) -> CatalogSealError:
        return CatalogSealError(f"{path}: {problem}", hint=_SEAL_HINT)

    if lists is None:
        lists = {}
    if not isinstance(lists, dict):
        raise bad("'lists' is not an object")
    parsed = {name: _versions_of(bad, name, versions) for name, versions in lists.items()}
    if trust is None:
        trust = {}
    if not isinstance(trust, dict):
        raise bad("'trust' is not an object")
    for source, entry in trust.items():
        if not isinstance(source, str) or not _NAME.match(source) or not isinstance(entry, dict) \
                or not isinstance(entry.get("key"), str) or not _HEX64.match(entry["key"]) \
                or entry.get("fingerprint") != public_key_fingerprint(bytes.fromhex(entry["key"])):
            raise bad("a trusted source key is malformed")
    if seals is None:
        seals = []
    if not isinstance(seals, list) or not all(isinstance(s, dict) for s in seals):
        raise bad("'seals' is not an array of records")
    if seal is not None and (not isinstance(seal, dict) or set(seal) != {"key_id", "mac"}
                             or not isinstance(seal["key_id"], str)
                             or not _KEY_ID.match(seal["key_id"])
                             or not isinstance(seal["mac"], str) or not _HEX64.match(seal["mac"])):
        raise bad("the seal is malformed")
    body = {"format": CATALOG_FORMAT, "lists": lists, "trust": trust, "seals": seals}
    return _Catalog(lists=parsed, trust=trust, seals=seals, seal=seal,
                    body=_canonical(body), legacy=legacy)


def _versions_of(bad: Callable[[str], CatalogSealError], name: object,
                 versions: object) -> list[ListVersion]:
    """One list's catalog entries as versions, each checked (:func:`_check_version`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad("a list name is not a valid name")
    if not isinstance(versions, list) or not versions:
        raise bad(f"list {name!r}: expected an array of versions")
    seen: set[str] = set()
    parsed: list[ListVersion] = []
    for number, entry in enumerate(versions, start=1):
        where = f"list {name!r}, version entry {number}"
        if not isinstance(entry, dict) or set(entry) - _FIELDS:
            raise bad(f"{where}: not a list version (unknown fields)")
        try:
            meta = ListVersion(**entry)
        except TypeError:
            raise bad(f"{where}: fields are missing") from None
        if meta.name != name or not isinstance(meta.version, str) \
                or not _NAME.match(meta.version) or meta.version in seen:
            raise bad(f"{where}: the name or version is not valid, or repeats")
        seen.add(meta.version)
        if meta.stored != f"data/{name}/{meta.version}":
            raise bad(f"{where}: the stored path is not the version's own folder under the "
                      "store (refused: the store reads and deletes only its own files)")
        _check_version(bad, where, meta)
        parsed.append(meta)
    return parsed


def _check_version(bad: Callable[[str], CatalogSealError], where: str,
                   meta: ListVersion) -> None:
    """A version entry's fields have their types and forms (digests, keys, fingerprints)."""
    if any(not isinstance(getattr(meta, f), t) for f, t in _FIELD_TYPES.items()) \
            or meta.kind not in ("block", "allow") \
            or meta.format not in {f.value for f in ListFormat} \
            or not all(isinstance(s, str) for s in meta.suppresses) \
            or not all(isinstance(n, int) for n in meta.counts.values()):
        raise bad(f"{where}: a field has the wrong type or value")
    for type_name, digest in meta.files.items():
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise bad(f"{where}: a stored file digest is not a sha256")
        try:
            get_type(type_name)
        except (KeyError, TypeError):
            raise bad(f"{where}: a stored file has an unknown type") from None
    if meta.signer_key is not None and (not isinstance(meta.signer_key, str)
                                        or not _HEX64.match(meta.signer_key)):
        raise bad(f"{where}: the signer key is not 32 bytes of hex")
    if meta.signed_by is not None and (not isinstance(meta.signed_by, str)
                                       or not _FINGERPRINT.match(meta.signed_by)):
        raise bad(f"{where}: the signer is not a key fingerprint")
    if meta.key_id is not None and (not isinstance(meta.key_id, str)
                                    or not _KEY_ID.match(meta.key_id)):
        raise bad(f"{where}: the key id is malformed")


def _check_name(value: str, what: str) -> None:
    if not _NAME.match(value):
        raise UserInputError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' "
                             "(at most 128, starting with a letter or digit)")
