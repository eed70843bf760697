"""The list store: versioned, verified, optionally encrypted hash sets and opt-out registries.

Under its root (``$SCRUB_HOME/lists``): ``catalog.json`` (every version's metadata, the sources'
signing keys and the record of sealings, sealed with an HMAC under the data key),
``data/NAME/VERSION/TYPE.parquet[.enc]`` (the keys, encrypted when sensitive, digests in the
catalog) and ``.lock`` (taken by every writer). Every version stays addressable as
``NAME@VERSION``; a list is bound to its signer and keeps its sensitivity. The layout, the trust
rules and why: docs/design/lists-store.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scrub.atomic import atomic_write_json, read_regular_bytes
from scrub.crypto import (
    KeyFileError,
    key_id,
    keyed_mac,
    load_public_key,
    load_signature,
    public_key_bytes,
    public_key_fingerprint,
)
from scrub.errors import ExternalSourceError, ScrubError, UserInputError
from scrub.lists._catalog import (
    _MAC_PURPOSE,
    _SEAL_HINT,
    CATALOG_FORMAT,
    URL_DIGEST_TYPES,
    CatalogSealError,
    ListVersion,
    _canonical,
    _Catalog,
    _catalog_from,
    _check_name,
    _now,
    resolve_in,
    stale_url_digests,
)
from scrub.lists._provenance import _sensitivity, _signer_of, _Verifier
from scrub.lists._store_files import _apply_delta, _difference_counts, _StoreFiles
from scrub.lists.hashlist import HashList, ListFormat, read_hashlist
from scrub.progress import Progress
from scrub.urls import URL_FORM

__all__ = ["CATALOG_FORMAT", "HOME_ENV", "URL_DIGEST_TYPES", "CatalogSealError", "ListStore",
           "ListVersion", "StoredList", "default_home", "resolve_in", "stale_url_digests"]

HOME_ENV = "SCRUB_HOME"


def default_home() -> Path:
    """``$SCRUB_HOME``, or ``~/.local/share/scrub``."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "scrub"


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


class ListStore(_StoreFiles):
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

        Hash sets are sensitive by default (opt-out registries are not), as is every new version
        of a sensitive list; a sensitive list needs ``key``. Signatures (ExternalSourceError,
        exit 3, when missing or bad): a list once signed is bound to that signer, whatever
        ``source`` says; ``allow_unsigned`` accepts an unsigned version, ``retrust`` rebinds it
        to ``source``'s registered key (the version must verify under it), both recorded in
        ``trust_change``; an unbound list needs a signature when ``source`` has a key. The bytes
        verified are the bytes parsed. ``progress`` shows steps and counts on stderr, never a
        value. Trust rules: docs/design/lists-store.md.
        """
        path = Path(path)
        _check_import(name, version, source, kind, suppresses, allow_unsigned, retrust)
        sig = load_signature(signature) if signature is not None else None
        verifies = _Verifier(path, sig)
        with self._locked():  # a first check, before the long parse (repeated below)
            catalog = self._catalog_for_write(key)
        _signer_of(catalog, name, source, path, sig, verifies, allow_unsigned, retrust)
        meter = Progress(f"import {name}@{version}", 3, None, enabled=progress,
                         units=("steps", "entries"))
        parsed = read_hashlist(path, type_name=type_name, fmt=fmt, label=f"{name}@{version}",
                               site=site, content=verifies.content)
        meter.advance(parsed.entries)
        verifies.forget()  # the signature checks above are cached; the parse holds the keys
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
            draft = ListVersion(name=name, version=version, source=source, received_at="",
                                kind=kind, suppresses=sorted(suppresses or []), terms=terms,
                                sensitive=sensitive, signed_by=signer.fingerprint,
                                signer_key=signer.key, trust_change=signer.change)
            meta = self._add_version(catalog, draft, path, parsed, delta, key, meter)
        meter.finish()
        return meta

    def _add_version(self, catalog: _Catalog, meta: ListVersion, path: Path, parsed: HashList,
                     delta: bool, key: bytes | None, meter: Progress) -> ListVersion:
        """Complete ``meta`` (provenance set) with ``parsed``'s keys, applied to the previous
        version when a delta, write its files and the catalog naming it; under the lock."""
        versions = catalog.lists.get(meta.name, [])
        previous = versions[-1] if versions else None
        is_delta = delta or bool(parsed.deleted)
        if is_delta and previous is None:
            raise UserInputError(f"{path}: a delta needs an earlier version of {meta.name!r}")
        old = self._read_keys(previous, key) if previous is not None else {}
        keys = _apply_delta(old, parsed) if is_delta else parsed.keys
        meta.added, meta.removed = _difference_counts(old, keys)
        meter.advance(0)
        meta.received_at = _now()
        meta.format, meta.file_sha256 = parsed.format.value, parsed.sha256
        meta.counts = {t: len(k) for t, k in sorted(keys.items())}
        meta.entries, meta.duplicates, meta.delta = parsed.entries, parsed.duplicates, is_delta
        meta.key_id = key_id(key) if meta.sensitive and key is not None else None
        # a delta keeps the digests of the version it applies to, and so their form
        meta.url_form = previous.url_form if is_delta and previous is not None \
            and stale_url_digests(previous) else URL_FORM
        meta.stored, meta.files = self._write_keys(meta, keys, key)
        meter.advance(0)
        meta.stored_sha256 = hashlib.sha256(
            json.dumps(meta.files, sort_keys=True).encode()).hexdigest()
        lists = dict(catalog.lists)
        lists[meta.name] = [*versions, meta]
        self._write_catalog(catalog, lists, catalog.trust, key)
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


def _check_import(name: str, version: str, source: str, kind: str, suppresses: list[str] | None,
                  allow_unsigned: bool, retrust: bool) -> None:
    """Refuse an import's options before anything is read (UserInputError)."""
    _check_name(name, "list name")
    _check_name(version, "version")
    _check_name(source, "source")
    if kind not in ("block", "allow"):
        raise UserInputError(f"--kind {kind!r}: expected block or allow")
    if kind == "allow" and not suppresses:
        raise UserInputError("an allow-list must name the lists it suppresses (--suppresses)")
    if allow_unsigned and retrust:
        raise UserInputError("--allow-unsigned and --retrust exclude each other")
