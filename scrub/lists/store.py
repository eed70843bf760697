"""The list store: versioned, verified, optionally encrypted hash sets and opt-out registries.

Layout under the store root (``$SCRUB_HOME/lists``, default ``~/.local/share/scrub/lists``):

- ``catalog.json``: metadata of every list version (provenance, counts, digests; never values),
  the Ed25519 public keys registered per source organisation, the record of every (re-)sealing,
  and the **seal**: an HMAC-SHA256 over all of that under a key derived from the data key. A
  store written with a data key is sealed; any change to it then needs the key, and every read
  given the key checks the seal before an entry is used (see :meth:`ListStore.seal` for stores
  written before seals existed, and SECURITY.md for what a store without a key protects);
- ``data/NAME/VERSION/TYPE.parquet`` (public) or ``TYPE.parquet.enc`` (sensitive, AES-256-GCM
  frames, encrypted as written): one ``key`` column per type, fixed-width binary (canonical text
  for URL prefixes), never hex strings. Their sha256 is in the catalog and checked on every read;
  the store reads and deletes only these paths, never through a symbolic link;
- ``.lock``: taken (``flock``) by every writer, so concurrent imports never corrupt the store.

Every version stays addressable as ``NAME@VERSION`` (``NAME`` alone is the latest), so a release
can be rebuilt with exactly the lists it used. A new version is either a full list (its adds and
removes against the previous version are counted) or a delta: a file with tombstones (``deleted``
entries) or imported with ``delta=True``, applied to the previous version. Each version is stored
whole, so reading one never needs another.

Trust is bound to the list: once a version of a list is signed, later versions must be signed by
the same key, whatever ``--source`` they claim; ``allow_unsigned`` and ``retrust`` are the
recorded exceptions. A list keeps its sensitivity: a sensitive list never gets a public version.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import (
    atomic_path,
    atomic_write_json,
    file_sha256,
    open_regular,
    read_regular_bytes,
)
from scrub.crypto import (
    EncryptingWriter,
    KeyFileError,
    decrypt_frames,
    key_id,
    keyed_mac,
    load_public_key,
    load_signature,
    public_key_bytes,
    public_key_fingerprint,
    signature_valid,
)
from scrub.errors import ExternalSourceError, ScrubError, UserInputError
from scrub.keys import KeySet, unique_values
from scrub.lists.hashlist import HashList, ListFormat, public_by_default, read_hashlist
from scrub.lists.types import get_type
from scrub.progress import Progress
from scrub.urls import URL_FORM

HOME_ENV = "SCRUB_HOME"
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


def default_home() -> Path:
    """``$SCRUB_HOME``, or ``~/.local/share/scrub``."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "scrub"


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
class StoredList:
    """A list version's metadata with its keys, decrypted in memory."""

    meta: ListVersion
    keys: dict[str, np.ndarray]

    def as_hashlist(self) -> HashList:
        """The keys as a :class:`HashList` (what the match plan is built from)."""
        return HashList(label=self.meta.ref, path=Path(self.meta.ref),
                        sha256=self.meta.stored_sha256, format=ListFormat(self.meta.format),
                        keys=dict(self.keys), entries=sum(len(k) for k in self.keys.values()))


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


@dataclass
class _Signer:
    """Who vouches for a new version: its signer (fingerprint, key hex) and any recorded
    exception to the list's binding."""

    fingerprint: str | None = None
    key: str | None = None
    change: str = ""


class ListStore:
    """The store at ``root`` (created on first write)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_home() / "lists"
        self.catalog_path = self.root / "catalog.json"
        #: Before seals, trusted keys lived here; read only to migrate them into the catalog.
        self.trust_path = self.root / "trust.json"
        # Digests of catalogs handed out unchecked (no key): a later checked read must find the
        # same catalog, so metadata read unchecked is never mixed with lists from another one.
        self._unchecked: set[str] = set()

    # ------------------------------------------------------------------ reading

    def catalog(self, *, key: bytes | None = None) -> dict[str, list[ListVersion]]:
        """Every list's versions, oldest first; checked against the seal when ``key`` is given."""
        return self._catalog(key).lists

    def resolve(self, ref: str, *, key: bytes | None = None) -> ListVersion:
        """``NAME`` (latest version) or ``NAME@VERSION``; UserInputError when unknown."""
        return resolve_in(self._catalog(key).lists, ref, self.root)

    def load(self, ref: str, *, key: bytes | None = None) -> StoredList:
        """A list version's keys; a sensitive one needs the key it was encrypted with.

        With ``key`` the catalog's seal is checked first. Without it, a sealed store is refused
        (its entries cannot be checked), and so is a public version of a list that has sensitive
        versions (a change from sensitive to public is only believed under the seal).
        """
        catalog = self._catalog(key)
        if key is None and catalog.seal is not None:
            raise KeyFileError(f"{ref}: the list store's catalog is sealed; a key file is needed "
                               "to check it before a list is used",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        meta = resolve_in(catalog.lists, ref, self.root)
        if key is None and not meta.sensitive \
                and any(v.sensitive for v in catalog.lists[meta.name]):
            raise KeyFileError(f"{meta.ref}: other versions of this list are sensitive; a key "
                               "file is needed to use it (without the key, a change from "
                               "sensitive to public cannot be checked)",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        return StoredList(meta=meta, keys=self._read_keys(meta, key))

    def trusted_keys(self) -> dict[str, dict[str, str]]:
        """The registered source keys, as stored (checked only by a keyed read or write)."""
        return self._read_catalog().trust

    def sealed_with(self) -> str | None:
        """The key id the catalog claims to be sealed with, or None when it is not sealed."""
        seal = self._read_catalog().seal
        return seal["key_id"] if seal else None

    def _catalog(self, key: bytes | None) -> _Catalog:
        catalog = self._read_catalog()
        if key is None:
            self._unchecked.add(catalog.digest)
        else:
            self._authenticate(catalog, key)
        return catalog

    def _read_catalog(self) -> _Catalog:
        """The catalog as stored, structurally checked (names, paths, digests); no seal check.

        A catalog that names no list while ``data/`` holds lists is refused: a deleted or
        emptied catalog must not pass for an empty store (a policy taking every list would
        then silently take none).
        """
        for folder in (self.root, *self.root.parents):  # a file where the store should be
            if folder.exists():       # is a misconfiguration, never "the store holds no lists"
                if not folder.is_dir():
                    raise UserInputError(f"{folder}: is not a folder, so the list store "
                                         f"{self.root} cannot be there",
                                         hint="point SCRUB_HOME (or --store) at a folder")
                break
        catalog = self._parse_catalog()
        if not catalog.lists and self._data_lists():
            raise CatalogSealError(
                f"{self.catalog_path}: the catalog names no list, but the store holds list data "
                f"({', '.join(self._data_lists()[:3])}): catalog.json was deleted, emptied or "
                "replaced", hint="restore catalog.json from a backup (or, if the store's first "
                                 "import was interrupted, remove its data/ folder)")
        return catalog

    def _data_lists(self) -> list[str]:
        """Names of the list folders under ``data/`` (hidden names excepted)."""
        try:
            return sorted(entry.name for entry in os.scandir(self.root / "data")
                          if not entry.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _parse_catalog(self) -> _Catalog:
        if not self.catalog_path.exists():
            legacy_trust = self._legacy_trust()
            return _catalog_from(self.catalog_path, {}, legacy_trust or {}, [], None,
                                 legacy=bool(legacy_trust))
        try:
            raw = json.loads(read_regular_bytes(self.catalog_path, "store catalog"))
        except (ValueError, RecursionError) as exc:
            raise ScrubError(f"{self.catalog_path}: the store catalog is corrupt ({exc})",
                             hint="restore it from a backup") from None
        if isinstance(raw, dict) and raw.get("format") == CATALOG_FORMAT:
            if set(raw) - {"format", "lists", "trust", "seals", "seal"}:
                raise CatalogSealError(f"{self.catalog_path}: unknown top-level fields",
                                       hint=_SEAL_HINT)
            return _catalog_from(self.catalog_path, raw.get("lists"), raw.get("trust"),
                                 raw.get("seals"), raw.get("seal"), legacy=False)
        if isinstance(raw, dict) and not isinstance(raw.get("format"), str):
            return _catalog_from(self.catalog_path, raw, self._legacy_trust() or {}, [], None,
                                 legacy=True)
        raise CatalogSealError(f"{self.catalog_path}: not a scrub list catalog",
                               hint=_SEAL_HINT)

    def _legacy_trust(self) -> dict[str, dict[str, str]] | None:
        if not self.trust_path.is_file():
            return None
        try:
            trust = json.loads(read_regular_bytes(self.trust_path, "trust file"))
        except ValueError:
            trust = None
        if not isinstance(trust, dict):
            raise CatalogSealError(f"{self.trust_path}: not a JSON object of trusted keys")
        return trust

    def _authenticate(self, catalog: _Catalog, key: bytes) -> None:
        """Check the seal under ``key``; an unsealed catalog passes only when it holds no list.

        Also refuses a catalog other than one this store handed out unchecked before: what was
        shown or resolved without the key must be what is now used with it.
        """
        if catalog.seal is None:
            if catalog.lists:
                why = "written by an older scrub" if catalog.legacy else "written without a key"
                raise CatalogSealError(
                    f"{self.catalog_path}: the catalog is not sealed ({why}), so its entries "
                    "cannot be authenticated",
                    hint="if this store was sealed before, catalog.json was replaced: restore it "
                         "from a backup. Otherwise review it with `scrub lists ls`, then seal it "
                         "once with `scrub lists seal --key-file FILE` (the sealing is recorded)")
        else:
            if catalog.seal["key_id"] != key_id(key):
                raise KeyFileError(f"{self.catalog_path}: the key file is not the key this "
                                   f"catalog was sealed with (key id {catalog.seal['key_id']})")
            expected = keyed_mac(key, _MAC_PURPOSE, catalog.body)
            if not hmac.compare_digest(expected, catalog.seal["mac"]):
                raise CatalogSealError(f"{self.catalog_path}: the catalog fails its seal (it was "
                                       "changed without the data key)", hint=_SEAL_HINT)
        if self._unchecked - {catalog.digest}:
            self._unchecked.clear()
            raise CatalogSealError(f"{self.catalog_path}: the catalog changed while this "
                                   "command was reading it",
                                   hint="rerun the command; if this repeats, run "
                                        "`scrub lists verify`")
        self._unchecked.clear()

    def _read_keys(self, meta: ListVersion, key: bytes | None) -> dict[str, np.ndarray]:
        keys: dict[str, np.ndarray] = {}
        for name in sorted(meta.files):
            path = self._inside(meta, name)
            if meta.sensitive:
                data = self._decrypted(meta, name, path, key)
            else:
                data = read_regular_bytes(path, "stored list file")
                _check_digest(meta, name, hashlib.sha256(data).hexdigest())
            # one thread: after reads on pyarrow's pool the interpreter aborted at exit in about
            # half the runs of `lists verify` ("terminate called without an active exception")
            table = pq.ParquetFile(pa.BufferReader(data)).read(columns=["key"],
                                                                use_threads=False)
            column = table.column("key").combine_chunks()
            del data
            if get_type(name).textual:
                keys[name] = np.array(column.to_pylist(), dtype=object)
            else:
                width = column.type.byte_width
                raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)
                keys[name] = raw[column.offset * width:(column.offset + len(column)) * width] \
                    .reshape(-1, width)
        return keys

    def _decrypted(self, meta: ListVersion, type_name: str, path: Path,
                   key: bytes | None) -> bytes:
        if key is None:
            raise KeyFileError(f"{meta.ref} is sensitive and encrypted; a key file is needed",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        if meta.key_id and key_id(key) != meta.key_id:
            raise KeyFileError(f"{meta.ref}: the key file is not the key this list was "
                               "encrypted with")
        with open_regular(path, "stored list file") as handle:
            reader = _HashingReader(handle)
            plain = b"".join(decrypt_frames(key, _purpose(meta, type_name), reader,
                                            name=meta.ref))
            _check_digest(meta, type_name, reader.hexdigest())
        return plain

    def _inside(self, meta: ListVersion, type_name: str | None = None) -> Path:
        """The path of a version's folder (or one of its files) under the root, refused when a
        part of it below the root is a symbolic link: the store reads and deletes only its own
        files. Names and versions were checked when the catalog was read."""
        parts = ["data", meta.name, meta.version]
        if type_name is not None:
            parts.append(_file_name(type_name, meta.sensitive))
        return self._own_path(parts)

    def _own_path(self, parts: list[str]) -> Path:
        path = self.root
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\x00" in part:
                raise CatalogSealError(f"{self.root}: a stored path leaves the store; refused")
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                raise CatalogSealError(f"{path}: a symbolic link inside the list store; refused "
                                       "(the store reads and deletes only its own files)",
                                       hint="replace it with the real folder or file")
        return self.root.joinpath(*parts)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _catalog_for_write(self, key: bytes | None) -> _Catalog:
        """The catalog a change starts from: a sealed one needs (and is checked with) the key."""
        catalog = self._read_catalog()
        if key is not None:
            self._authenticate(catalog, key)
        elif catalog.seal is not None:
            raise KeyFileError(f"{self.catalog_path}: the store's catalog is sealed; a key file "
                               "is needed to change the store",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        return catalog

    def _write_catalog(self, catalog: _Catalog, lists: dict[str, list[ListVersion]],
                       trust: dict[str, dict[str, str]], key: bytes | None, *,
                       record: dict[str, object] | None = None) -> None:
        """Write the catalog, sealed under ``key`` (unsealed without one). The first sealing of
        a store (a new one, or one holding only trusted keys) is recorded."""
        seals = list(catalog.seals)
        if key is not None and (catalog.seal is None or record is not None):
            seals.append(record or {
                "at": _now(), "key_id": key_id(key),
                "event": "sealed on the first write with a data key",
                "lists": len(lists), "trusted_sources": len(trust)})
        body = {"format": CATALOG_FORMAT,
                "lists": {name: [asdict(v) for v in versions]
                          for name, versions in sorted(lists.items()) if versions},
                "trust": dict(sorted(trust.items())), "seals": seals}
        seal = None
        if key is not None:
            seal = {"key_id": key_id(key), "mac": keyed_mac(key, _MAC_PURPOSE, _canonical(body))}
        atomic_write_json(self.catalog_path, {**body, "seal": seal})
        if self.trust_path.is_file() or self.trust_path.is_symlink():
            self.trust_path.unlink()  # migrated into the catalog
        self._unchecked.clear()

    def trust(self, source: str, public_key: Path, *, key: bytes | None = None) -> str:
        """Register ``source``'s Ed25519 public key; imports from it then need a signature.

        A list already bound to an older key of the source stays bound to it until a version
        signed with the new key is imported with ``retrust``.
        """
        _check_name(source, "source")
        raw = public_key_bytes(load_public_key(public_key))
        fingerprint = public_key_fingerprint(raw)
        with self._locked():
            catalog = self._catalog_for_write(key)
            trusted = dict(catalog.trust)
            trusted[source] = {"key": raw.hex(), "fingerprint": fingerprint}
            self._write_catalog(catalog, catalog.lists, trusted, key)
        return fingerprint

    def import_list(self, path: Path | str, *, name: str, source: str, version: str,
                    type_name: str | None = None, fmt: ListFormat = ListFormat.auto,
                    sensitive: bool | None = None, signature: Path | str | None = None,
                    terms: str = "", kind: str = "block", suppresses: list[str] | None = None,
                    delta: bool = False, key: bytes | None = None,
                    site: str | None = None, allow_unsigned: bool = False,
                    retrust: bool = False, progress: bool = False) -> ListVersion:
        """Validate, verify and store a new list version; nothing is stored on any failure.

        Hash sets are sensitive by default (opt-out registries of URLs, hosts and domains are
        not), and a new version of a sensitive list is sensitive; a sensitive list needs ``key``.

        Signatures (ExternalSourceError, exit 3, when one is missing or bad): a list whose
        earlier version was signed is bound to that signer, and every new version must verify
        under its key, whatever ``source`` says; ``allow_unsigned`` accepts an unsigned version
        and ``retrust`` binds the list to the key now registered for ``source`` (the new version
        must verify under it); both are recorded in the version's ``trust_change``. A list not
        yet bound needs a signature when ``source`` has a registered key. The signed file is
        read once: the bytes verified are the bytes hashed and parsed.

        ``progress``: show the steps (parse, merge, write) and the entries on stderr (counts
        only, never a value).
        """
        path = Path(path)
        _check_name(name, "list name")
        _check_name(version, "version")
        _check_name(source, "source")
        if kind not in ("block", "allow"):
            raise UserInputError(f"--kind {kind!r}: expected block or allow")
        if kind == "allow" and not suppresses:
            raise UserInputError("an allow-list must name the lists it suppresses (--suppresses)")
        if allow_unsigned and retrust:
            raise UserInputError("--allow-unsigned and --retrust exclude each other")
        sig = load_signature(signature) if signature is not None else None
        content = read_regular_bytes(path, "list file") if sig is not None else None
        verified: dict[str, bool] = {}

        def verifies(public_hex: str) -> bool:
            if public_hex not in verified:
                if content is None or sig is None:
                    raise ExternalSourceError(f"{path}: the store changed during the import",
                                              hint="rerun it; nothing was stored")
                verified[public_hex] = signature_valid(bytes.fromhex(public_hex), content, sig)
            return verified[public_hex]

        with self._locked():  # a first check, before the long parse (repeated below)
            catalog = self._catalog_for_write(key)
        _signer_of(catalog, name, source, path, sig, verifies, allow_unsigned, retrust)
        meter = Progress(f"import {name}@{version}", 3, None, enabled=progress,
                         units=("steps", "entries"))
        parsed = read_hashlist(path, type_name=type_name, fmt=fmt, label=f"{name}@{version}",
                               site=site, content=content)
        meter.advance(parsed.entries)
        content = None  # the signature checks above are cached; the parse holds the keys
        wanted = sensitive
        sensitive = _sensitivity(catalog.lists.get(name, []), name, wanted, parsed)
        if sensitive and key is None:
            raise KeyFileError(f"{name}: a sensitive list is stored encrypted; a key file is "
                               "needed", hint="create one with `scrub keygen --output FILE`, "
                                              "then pass --key-file or set SCRUB_KEY_FILE")
        with self._locked():
            catalog = self._catalog_for_write(key)
            versions = catalog.lists.get(name, [])
            if any(v.version == version for v in versions):
                raise UserInputError(f"list {name!r} already has a version {version!r}",
                                     hint="versions are immutable; import under a new version")
            signer = _signer_of(catalog, name, source, path, sig, verifies, allow_unsigned,
                                retrust)
            if _sensitivity(versions, name, wanted, parsed) != sensitive:
                raise ExternalSourceError(f"{name}: the store changed during the import",
                                          hint="rerun it; nothing was stored")
            previous = versions[-1] if versions else None
            is_delta = delta or bool(parsed.deleted)
            if is_delta and previous is None:
                raise UserInputError(f"{path}: a delta needs an earlier version of {name!r}")
            old = self._read_keys(previous, key) if previous is not None else {}
            keys = _apply_delta(old, parsed) if is_delta else parsed.keys
            added, removed = _difference_counts(old, keys)
            meter.advance(0)
            meta = ListVersion(
                name=name, version=version, source=source, received_at=_now(),
                kind=kind, suppresses=sorted(suppresses or []), terms=terms,
                sensitive=sensitive, format=parsed.format.value, file_sha256=parsed.sha256,
                signed_by=signer.fingerprint, counts={t: len(k) for t, k in sorted(keys.items())},
                entries=parsed.entries, duplicates=parsed.duplicates, delta=is_delta,
                added=added, removed=removed,
                key_id=key_id(key) if sensitive and key is not None else None,
                signer_key=signer.key, trust_change=signer.change,
                # a delta keeps the digests of the version it applies to, and so their form
                url_form=previous.url_form if is_delta and previous is not None
                and stale_url_digests(previous) else URL_FORM)
            meta.stored, meta.files = self._write_keys(meta, keys, key)
            meter.advance(0)
            meta.stored_sha256 = hashlib.sha256(
                json.dumps(meta.files, sort_keys=True).encode()).hexdigest()
            lists = dict(catalog.lists)
            lists[name] = [*versions, meta]
            self._write_catalog(catalog, lists, catalog.trust, key)
        meter.finish()
        return meta

    def remove(self, ref: str, *, key: bytes | None = None) -> list[ListVersion]:
        """Remove one version (``NAME@V``) or every version of a list (``NAME``).

        Only the versions' own folders under ``data/`` are deleted (never a path the catalog
        names, never through a symbolic link); a sealed store needs ``key``.
        """
        with self._locked():
            catalog = self._catalog_for_write(key)
            name, _, version = ref.partition("@")
            versions = catalog.lists.get(name, [])
            gone = [v for v in versions if not version or v.version == version]
            if not gone:
                raise UserInputError(f"no list version {ref!r} in the store")
            folders = [self._inside(meta) for meta in gone]
            kept = [v for v in versions if v not in gone]
            whole = self._own_path(["data", name]) if not kept else None
            lists = dict(catalog.lists)
            lists[name] = kept
            self._write_catalog(catalog, lists, catalog.trust, key)
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            if whole is not None:
                shutil.rmtree(whole, ignore_errors=True)
        return gone

    def seal(self, key: bytes, *, force: bool = False) -> dict[str, object] | None:
        """Seal a catalog written without a key or by an older scrub, once, after checking every
        stored file against it (sensitive ones decrypted with ``key``). Recorded in the catalog.

        None when it is already sealed with ``key``. A catalog whose seal fails, or whose files
        do not match, is refused unless ``force`` (for an operator who has reviewed it).
        """
        with self._locked():
            catalog = self._read_catalog()
            event = "sealed a catalog written by an older scrub" if catalog.legacy \
                else "sealed a catalog written without a key"
            if catalog.seal is not None:
                try:
                    self._authenticate(catalog, key)
                    return None
                except (CatalogSealError, KeyFileError):
                    if not force:
                        raise
                event = "resealed a catalog that failed its seal (--force)"
            problems = self._file_problems(catalog, key)
            if problems and not force:
                raise CatalogSealError(f"{self.catalog_path}: not sealed: {len(problems)} "
                                       f"problem(s), first: {problems[0]}",
                                       hint="run `scrub lists verify --key-file FILE`; fix or "
                                            "remove those lists, or pass --force to seal as is")
            record: dict[str, object] = {
                "at": _now(), "key_id": key_id(key), "event": event,
                "lists": len(catalog.lists),
                "versions": sum(len(v) for v in catalog.lists.values()),
                "trusted_sources": len(catalog.trust), "problems": len(problems)}
            self._write_catalog(catalog, catalog.lists, catalog.trust, key, record=record)
        return record

    def verify(self, *, key: bytes | None = None) -> list[str]:
        """Problems found: a catalog that fails its seal (or is not sealed), missing or altered
        files, undecryptable or miscounted data.

        Without ``key``, a sealed catalog cannot be checked: KeyFileError (exit 2).
        """
        catalog = self._read_catalog()
        problems: list[str] = []
        if key is not None:
            try:
                self._authenticate(catalog, key)
            except CatalogSealError as exc:
                if catalog.seal is not None:
                    return [exc.message]
                problems.append(exc.message)
        elif catalog.seal is not None:
            raise KeyFileError(f"{self.catalog_path}: the catalog is sealed; a key file is "
                               "needed to check it (nothing was checked)",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        elif any(m.sensitive for versions in catalog.lists.values() for m in versions):
            problems.append(f"{self.catalog_path}: the catalog holds sensitive lists but is not "
                            "sealed; run `scrub lists seal --key-file FILE` once")
        stale = [f"{meta.ref}: url/host/domain entries stored under canonical URL form "
                 f"{meta.url_form or 1} (this scrub matches form {URL_FORM}); re-import it from "
                 "its source file as a new version"
                 for versions in catalog.lists.values() for meta in versions
                 if stale_url_digests(meta)]
        return problems + self._file_problems(catalog, key) + stale

    def _file_problems(self, catalog: _Catalog, key: bytes | None) -> list[str]:
        problems = [f"data/{name}/{version}: stored data the catalog does not name (an "
                    "interrupted import, or a catalog rolled back or edited)"
                    for name, version in self._orphans(catalog)]
        for versions in catalog.lists.values():
            for meta in versions:
                damaged = False
                for name, digest in sorted(meta.files.items()):
                    try:
                        path = self._inside(meta, name)
                    except CatalogSealError as exc:
                        problems.append(f"{meta.ref}: {exc.message}")
                        damaged = True
                        continue
                    if not path.is_file():
                        problems.append(f"{meta.ref}: stored {name} file is missing")
                        damaged = True
                    elif file_sha256(path) != digest:
                        problems.append(f"{meta.ref}: stored {name} file was altered "
                                        "(sha256 differs)")
                        damaged = True
                if damaged:
                    continue
                if meta.sensitive and key is None:
                    continue  # contents checked only with the key
                if meta.sensitive and key_id(key) != meta.key_id:  # type: ignore[arg-type]
                    problems.append(f"{meta.ref}: encrypted with another key (key id "
                                    f"{meta.key_id}); its contents were not checked")
                    continue
                try:
                    counts = {t: len(k) for t, k in self._read_keys(meta, key).items()}
                except ScrubError as exc:
                    problems.append(f"{meta.ref}: {exc.message}")
                    continue
                if counts != meta.counts:
                    problems.append(f"{meta.ref}: entry counts differ from the catalog")
        return problems

    def _orphans(self, catalog: _Catalog) -> list[tuple[str, str]]:
        """Version folders under ``data/`` that no catalog entry names (hidden names aside)."""
        found = []
        for name in self._data_lists():
            known = {v.version for v in catalog.lists.get(name, [])}
            try:
                versions = sorted(e.name for e in os.scandir(self.root / "data" / name)
                                  if not e.name.startswith("."))
            except OSError:
                versions = ["?"]
            found += [(name, version) for version in versions if version not in known]
        return found

    def _write_keys(self, meta: ListVersion, keys: dict[str, np.ndarray],
                    key: bytes | None) -> tuple[str, dict[str, str]]:
        """One parquet file per type (fixed-width binary keys; text for URL prefixes),
        encrypted on the fly for sensitive lists: no plaintext ever reaches the disk."""
        folder = Path("data") / meta.name / meta.version
        self._inside(meta)  # no symbolic link on the way, before anything is created
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._inside(meta)
        digests: dict[str, str] = {}
        for name, array in sorted(keys.items()):
            if get_type(name).textual:
                column = pa.array(array.tolist(), type=pa.string())
            else:
                width = array.shape[1]
                column = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(width), len(array),
                    [None, pa.py_buffer(np.ascontiguousarray(array))])
            table = pa.table({"key": column})
            target = self.root / folder / _file_name(name, meta.sensitive)
            with atomic_path(target, private=meta.sensitive) as tmp:
                with open(tmp, "wb") as handle:
                    if meta.sensitive:
                        sink = EncryptingWriter(key or b"", _purpose(meta, name), handle)
                        pq.write_table(table, sink, compression="zstd")
                        sink.close()
                    else:
                        pq.write_table(table, handle, compression="zstd")
            digests[name] = file_sha256(target)
        return folder.as_posix(), digests


class _HashingReader:
    """A read-only file wrapper that digests what is read through it (one pass: the bytes
    decrypted are the bytes checked against the catalog)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        rest = self._handle.read()  # bytes after the last frame are refused by the decrypter
        self._digest.update(rest)
        return self._digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _canonical(body: object) -> bytes:
    """The bytes the seal covers: sorted keys, no whitespace, ASCII."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_digest(meta: ListVersion, type_name: str, digest: str) -> None:
    if digest != meta.files.get(type_name):
        raise ExternalSourceError(f"{meta.ref}: stored {type_name} file was altered (sha256 "
                                  "differs from the catalog)",
                                  hint="run `scrub lists verify`; restore the store from a "
                                       "backup or import the list again")


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
    parsed: dict[str, list[ListVersion]] = {}
    for name, versions in lists.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad("a list name is not a valid name")
        if not isinstance(versions, list) or not versions:
            raise bad(f"list {name!r}: expected an array of versions")
        seen: set[str] = set()
        parsed[name] = []
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
            parsed[name].append(meta)
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
    return _Catalog(lists=parsed, trust=trust, seals=seals, seal=seal,  # type: ignore[arg-type]
                    body=_canonical(body), legacy=legacy)


def _binding(versions: list[ListVersion],
             trust: dict[str, dict[str, str]]) -> tuple[str, str | None] | None:
    """The signer a list is bound to: the latest signed version's (fingerprint, key hex). The
    key of a version written before keys were recorded is found among the trusted keys."""
    for meta in reversed(versions):
        if meta.signed_by:
            public = meta.signer_key or next(
                (t["key"] for t in trust.values() if t["fingerprint"] == meta.signed_by), None)
            if public is not None and public_key_fingerprint(bytes.fromhex(public)) \
                    != meta.signed_by:
                public = None
            return meta.signed_by, public
    return None


def _signer_of(catalog: _Catalog, name: str, source: str, path: Path, sig: bytes | None,
               verifies: Callable[[str], bool], allow_unsigned: bool,
               retrust: bool) -> _Signer:
    """Who vouches for a new version of ``name`` (see :meth:`ListStore.import_list`)."""
    trusted = catalog.trust.get(source)
    bound = _binding(catalog.lists.get(name, []), catalog.trust)
    none_stored = "nothing was stored"
    if bound is None:
        if retrust:
            raise UserInputError(f"--retrust: list {name!r} is not bound to a signer")
        if trusted is None:
            if sig is not None:
                raise ExternalSourceError(
                    f"{path}: a signature was given but source {source!r} has no registered key",
                    hint=f"run `scrub lists trust --source {source} --key ...`")
            return _Signer()
        if sig is None:
            if allow_unsigned:
                return _Signer(change=f"accepted unsigned with --allow-unsigned (source "
                                      f"{source} signs with {trusted['fingerprint']})")
            raise ExternalSourceError(
                f"{path}: source {source!r} is trusted with a signing key, and no signature was "
                "given", hint=f"pass --signature FILE; {none_stored}")
        if not verifies(trusted["key"]):
            raise _bad_signature(path, f"{source!r}'s key {trusted['fingerprint']}")
        return _Signer(trusted["fingerprint"], trusted["key"])
    fingerprint, public = bound
    if retrust:
        if trusted is None:
            raise ExternalSourceError(
                f"--retrust: source {source!r} has no registered key to bind list {name!r} to",
                hint=f"register its new key with `scrub lists trust --source {source} --key ...`")
        if sig is None:
            raise ExternalSourceError(f"{path}: --retrust needs the version signed with "
                                      f"{source!r}'s key", hint=f"pass --signature; {none_stored}")
        if not verifies(trusted["key"]):
            raise _bad_signature(path, f"{source!r}'s key {trusted['fingerprint']}")
        change = "" if trusted["fingerprint"] == fingerprint else \
            f"re-trusted with --retrust: signer {fingerprint} -> {trusted['fingerprint']}"
        return _Signer(trusted["fingerprint"], trusted["key"], change)
    if sig is None:
        if allow_unsigned:
            return _Signer(change=f"accepted unsigned with --allow-unsigned (the list stays "
                                  f"bound to {fingerprint})")
        raise ExternalSourceError(
            f"{path}: list {name!r} is bound to signer {fingerprint} (an earlier version was "
            "signed); a new version needs its signature, whatever the source",
            hint=f"pass --signature FILE; --allow-unsigned accepts it unsigned (recorded); "
                 f"{none_stored}")
    if public is None:
        raise ExternalSourceError(
            f"{path}: list {name!r} is bound to signer {fingerprint}, whose key is not "
            "registered any more", hint="register it again with `scrub lists trust`, or pass "
                                        "--retrust with the source's new key (recorded)")
    if verifies(public):
        return _Signer(fingerprint, public)
    if trusted is not None and trusted["key"] != public and verifies(trusted["key"]):
        raise ExternalSourceError(
            f"{path}: the signature verifies under {trusted['fingerprint']}, the key now "
            f"registered for {source!r}, but list {name!r} is bound to {fingerprint}",
            hint=f"pass --retrust to bind the list to the new key (recorded); {none_stored}")
    raise _bad_signature(path, f"list {name!r}'s signer {fingerprint}")


def _bad_signature(path: Path, whose: str) -> ExternalSourceError:
    return ExternalSourceError(f"{path}: the signature does not verify under {whose}",
                               hint="the file or the signature was altered, or signed by another "
                                    "key; nothing was stored")


def _sensitivity(versions: list[ListVersion], name: str, wanted: bool | None,
                 parsed: HashList) -> bool:
    """A new version's sensitivity: as asked, else inherited from the list, else by its types
    (hash sets are sensitive; opt-out URLs, hosts and domains are not). Never sensitive to
    public: that would store a sensitive list's entries in clear."""
    was_sensitive = any(v.sensitive for v in versions)
    if wanted is False and was_sensitive:
        raise UserInputError(f"list {name!r} is sensitive; a new version of it cannot be public "
                             "(--public)", hint="a list keeps its sensitivity; import public "
                                                "entries under another name")
    if wanted is not None:
        return wanted
    if was_sensitive:
        return True
    return not public_by_default(set(parsed.keys) | set(parsed.deleted))


def _purpose(meta: ListVersion, type_name: str) -> str:
    return f"list:{meta.name}@{meta.version}:{type_name}"


def _file_name(type_name: str, sensitive: bool) -> str:
    return f"{type_name}.parquet.enc" if sensitive else f"{type_name}.parquet"


def _check_name(value: str, what: str) -> None:
    if not _NAME.match(value):
        raise UserInputError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' "
                             "(at most 128, starting with a letter or digit)")


def _apply_delta(old: dict[str, np.ndarray], delta: HashList) -> dict[str, np.ndarray]:
    """The previous version plus the delta's entries minus its tombstones."""
    result: dict[str, np.ndarray] = {}
    for name in sorted(set(old) | set(delta.keys) | set(delta.deleted)):
        parts = [a for a in (old.get(name), delta.keys.get(name)) if a is not None]
        merged = unique_values(np.concatenate(parts)) if parts else None
        if merged is None:
            continue
        gone = delta.deleted.get(name)
        if gone is not None and len(merged):
            merged = merged[~_member(merged, gone)]
        if len(merged):
            result[name] = merged
    return result


def _difference_counts(old: dict[str, np.ndarray],
                       new: dict[str, np.ndarray]) -> tuple[int, int]:
    added = removed = 0
    for name in set(old) | set(new):
        before, after = old.get(name), new.get(name)
        if before is None:
            added += len(after)  # type: ignore[arg-type]
        elif after is None:
            removed += len(before)
        else:
            added += int((~_member(after, before)).sum())
            removed += int((~_member(before, after)).sum())
    return added, removed



def _member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.isin(values, of)
    return KeySet(of).contains(values)
