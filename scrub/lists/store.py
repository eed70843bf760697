"""The list store: versioned, verified, optionally encrypted hash sets and opt-out registries.

Layout under the store root (``$SCRUB_HOME/lists``, default ``~/.local/share/scrub/lists``):

- ``catalog.json``: metadata of every list version (provenance, counts, digests; never values);
- ``trust.json``: the Ed25519 public keys registered per source organisation;
- ``data/NAME/VERSION/TYPE.parquet`` (public) or ``TYPE.parquet.enc`` (sensitive, AES-256-GCM
  frames, encrypted as written): one ``key`` column per type, fixed-width binary (canonical text
  for URL prefixes), never hex strings;
- ``.lock``: taken (``flock``) by every writer, so concurrent imports never corrupt the store.

Every version stays addressable as ``NAME@VERSION`` (``NAME`` alone is the latest), so a release
can be rebuilt with exactly the lists it used. A new version is either a full list (its adds and
removes against the previous version are counted) or a delta: a file with tombstones (``deleted``
entries) or imported with ``delta=True``, applied to the previous version. Each version is stored
whole, so reading one never needs another.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import atomic_path, atomic_write_json, file_sha256
from scrub.crypto import (
    EncryptingWriter,
    KeyFileError,
    decrypt_frames,
    key_id,
    load_public_key,
    load_signature,
    public_key_bytes,
    public_key_fingerprint,
    verify_signature,
)
from scrub.errors import ExternalSourceError, ScrubError, UserInputError
from scrub.keys import KeySet, unique_values
from scrub.lists.hashlist import HashList, ListFormat, read_hashlist
from scrub.lists.types import get_type

HOME_ENV = "SCRUB_HOME"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_home() -> Path:
    """``$SCRUB_HOME``, or ``~/.local/share/scrub``."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".local" / "share" / "scrub"


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

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


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


class ListStore:
    """The store at ``root`` (created on first write)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_home() / "lists"
        self.catalog_path = self.root / "catalog.json"
        self.trust_path = self.root / "trust.json"

    # ------------------------------------------------------------------ reading

    def catalog(self) -> dict[str, list[ListVersion]]:
        """Every list's versions, oldest first."""
        if not self.catalog_path.is_file():
            return {}
        try:
            raw = json.loads(self.catalog_path.read_text())
        except ValueError as exc:
            raise ScrubError(f"{self.catalog_path}: the store catalog is corrupt ({exc})",
                             hint="run `scrub lists verify`") from None
        return {name: [ListVersion(**v) for v in versions] for name, versions in raw.items()}

    def resolve(self, ref: str) -> ListVersion:
        """``NAME`` (latest version) or ``NAME@VERSION``; UserInputError when unknown."""
        name, _, version = ref.partition("@")
        versions = self.catalog().get(name)
        if not versions:
            raise UserInputError(f"no list named {name!r} in the store ({self.root})",
                                 hint="see `scrub lists ls`")
        if not version or version == "latest":
            return versions[-1]
        for meta in versions:
            if meta.version == version:
                return meta
        known = ", ".join(v.version for v in versions)
        raise UserInputError(f"list {name!r} has no version {version!r} (versions: {known})")

    def load(self, ref: str, *, key: bytes | None = None) -> StoredList:
        """A list version's keys; a sensitive one needs the key it was encrypted with."""
        meta = self.resolve(ref)
        return StoredList(meta=meta, keys=self._read_keys(meta, key))

    def _read_keys(self, meta: ListVersion, key: bytes | None) -> dict[str, np.ndarray]:
        keys: dict[str, np.ndarray] = {}
        for name in sorted(meta.files):
            path = self.root / meta.stored / _file_name(name, meta.sensitive)
            data = self._decrypted(meta, name, path, key) if meta.sensitive else path.read_bytes()
            column = pq.read_table(pa.BufferReader(data)).column("key").combine_chunks()
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
        with open(path, "rb") as handle:
            return b"".join(decrypt_frames(key, _purpose(meta, type_name), handle,
                                           name=meta.ref))

    def trusted_keys(self) -> dict[str, dict[str, str]]:
        if not self.trust_path.is_file():
            return {}
        return json.loads(self.trust_path.read_text())

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

    def trust(self, source: str, public_key: Path) -> str:
        """Register ``source``'s Ed25519 public key; imports from it then need a signature."""
        _check_name(source, "source")
        raw = public_key_bytes(load_public_key(public_key))
        fingerprint = public_key_fingerprint(raw)
        with self._locked():
            trusted = self.trusted_keys()
            trusted[source] = {"key": raw.hex(), "fingerprint": fingerprint}
            atomic_write_json(self.trust_path, trusted)
        return fingerprint

    def import_list(self, path: Path | str, *, name: str, source: str, version: str,
                    type_name: str | None = None, fmt: ListFormat = ListFormat.auto,
                    sensitive: bool | None = None, signature: Path | str | None = None,
                    terms: str = "", kind: str = "block", suppresses: list[str] | None = None,
                    delta: bool = False, key: bytes | None = None,
                    site: str | None = None) -> ListVersion:
        """Validate, verify and store a new list version; nothing is stored on any failure.

        Hash sets are sensitive by default (opt-out registries of URLs, hosts and domains are
        not); a sensitive list needs ``key``. A source with a registered public key needs a valid
        ``signature`` (ExternalSourceError, exit 3, otherwise).
        """
        path = Path(path)
        _check_name(name, "list name")
        _check_name(version, "version")
        _check_name(source, "source")
        if kind not in ("block", "allow"):
            raise UserInputError(f"--kind {kind!r}: expected block or allow")
        if kind == "allow" and not suppresses:
            raise UserInputError("an allow-list must name the lists it suppresses (--suppresses)")
        trusted = self.trusted_keys().get(source)
        signed_by = None
        if trusted is not None:
            if signature is None:
                raise ExternalSourceError(
                    f"{path}: source {source!r} is trusted with a signing key, and no "
                    "signature was given", hint="pass --signature FILE; nothing was stored")
            verify_signature(bytes.fromhex(trusted["key"]), path, load_signature(signature))
            signed_by = trusted["fingerprint"]
        elif signature is not None:
            raise ExternalSourceError(f"{path}: a signature was given but source {source!r} has "
                                      "no registered key",
                                      hint=f"run `scrub lists trust --source {source} --key ...`")
        parsed = read_hashlist(path, type_name=type_name, fmt=fmt, label=f"{name}@{version}",
                               site=site)
        if sensitive is None:
            sensitive = not all(get_type(t).target == "url" and t not in _URL_DIGESTS
                                for t in (set(parsed.keys) | set(parsed.deleted)))
        if sensitive and key is None:
            raise KeyFileError(f"{name}: a sensitive list is stored encrypted; a key file is "
                               "needed", hint="create one with `scrub keygen --output FILE`, "
                                              "then pass --key-file or set SCRUB_KEY_FILE")
        with self._locked():
            versions = self.catalog().get(name, [])
            if any(v.version == version for v in versions):
                raise UserInputError(f"list {name!r} already has a version {version!r}",
                                     hint="versions are immutable; import under a new version")
            previous = versions[-1] if versions else None
            is_delta = delta or bool(parsed.deleted)
            if is_delta and previous is None:
                raise UserInputError(f"{path}: a delta needs an earlier version of {name!r}")
            old = self._read_keys(previous, key) if previous is not None else {}
            keys = _apply_delta(old, parsed) if is_delta else parsed.keys
            added, removed = _difference_counts(old, keys)
            meta = ListVersion(
                name=name, version=version, source=source,
                received_at=datetime.now(UTC).isoformat(timespec="seconds"),
                kind=kind, suppresses=sorted(suppresses or []), terms=terms,
                sensitive=sensitive, format=parsed.format.value, file_sha256=parsed.sha256,
                signed_by=signed_by, counts={t: len(k) for t, k in sorted(keys.items())},
                entries=parsed.entries, duplicates=parsed.duplicates, delta=is_delta,
                added=added, removed=removed,
                key_id=key_id(key) if sensitive and key is not None else None)
            meta.stored, meta.files = self._write_keys(meta, keys, key)
            meta.stored_sha256 = hashlib.sha256(
                json.dumps(meta.files, sort_keys=True).encode()).hexdigest()
            catalog = self.catalog()
            catalog.setdefault(name, []).append(meta)
            self._write_catalog(catalog)
        return meta

    def remove(self, ref: str) -> list[ListVersion]:
        """Remove one version (``NAME@V``) or every version of a list (``NAME``)."""
        with self._locked():
            catalog = self.catalog()
            name, _, version = ref.partition("@")
            versions = catalog.get(name, [])
            gone = [v for v in versions if not version or v.version == version]
            if not gone:
                raise UserInputError(f"no list version {ref!r} in the store")
            catalog[name] = [v for v in versions if v not in gone]
            if not catalog[name]:
                del catalog[name]
            self._write_catalog(catalog)
            for meta in gone:
                shutil.rmtree(self.root / meta.stored, ignore_errors=True)
            if name not in catalog:
                shutil.rmtree(self.root / "data" / name, ignore_errors=True)
        return gone

    def verify(self, *, key: bytes | None = None) -> list[str]:
        """Problems found: missing or altered files, undecryptable or miscounted data."""
        problems: list[str] = []
        for versions in self.catalog().values():
            for meta in versions:
                damaged = False
                for name, digest in sorted(meta.files.items()):
                    path = self.root / meta.stored / _file_name(name, meta.sensitive)
                    if not path.is_file():
                        problems.append(f"{meta.ref}: stored {name} file is missing")
                        damaged = True
                    elif file_sha256(path) != digest:
                        problems.append(f"{meta.ref}: stored {name} file was altered "
                                        "(sha256 differs)")
                        damaged = True
                if damaged:
                    continue
                if meta.sensitive and (key is None or key_id(key) != meta.key_id):
                    continue  # contents checked only with the right key
                try:
                    counts = {t: len(k) for t, k in self._read_keys(meta, key).items()}
                except ScrubError as exc:
                    problems.append(f"{meta.ref}: {exc.message}")
                    continue
                if counts != meta.counts:
                    problems.append(f"{meta.ref}: entry counts differ from the catalog")
        return problems

    def _write_keys(self, meta: ListVersion, keys: dict[str, np.ndarray],
                    key: bytes | None) -> tuple[str, dict[str, str]]:
        """One parquet file per type (fixed-width binary keys; text for URL prefixes),
        encrypted on the fly for sensitive lists: no plaintext ever reaches the disk."""
        folder = Path("data") / meta.name / meta.version
        (self.root / folder).mkdir(parents=True, exist_ok=True)
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

    def _write_catalog(self, catalog: dict[str, list[ListVersion]]) -> None:
        atomic_write_json(self.catalog_path,
                          {name: [asdict(v) for v in versions]
                           for name, versions in sorted(catalog.items())})


_URL_DIGESTS = frozenset({"url_md5", "url_sha1", "url_sha256"})


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
