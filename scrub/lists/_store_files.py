"""The store's data files: reading, checking and writing one list version's key files
(parquet, AES-256-GCM frames when sensitive), only ever under the store's own folders."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import atomic_path, file_sha256, open_regular, read_regular_bytes
from scrub.crypto import EncryptingWriter, KeyFileError, decrypt_frames, key_id
from scrub.errors import ExternalSourceError, ScrubError
from scrub.keys import KeySet, unique_values
from scrub.lists._catalog import CatalogSealError, ListVersion, _Catalog
from scrub.lists.hashlist import HashList
from scrub.lists.types import get_type


class _StoreFiles:
    """The data-file half of :class:`~scrub.lists.store.ListStore` (under ``root``)."""

    root: Path

    def _data_lists(self) -> list[str]:
        """Names of the list folders under ``data/`` (hidden names excepted)."""
        try:
            return sorted(entry.name for entry in os.scandir(self.root / "data")
                          if not entry.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

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

    def _file_problems(self, catalog: _Catalog, key: bytes | None) -> list[str]:
        problems = [f"data/{name}/{version}: stored data the catalog does not name (an "
                    "interrupted import, or a catalog rolled back or edited)"
                    for name, version in self._orphans(catalog)]
        for versions in catalog.lists.values():
            for meta in versions:
                damaged = self._damaged_files(meta)
                problems += damaged or self._content_problems(meta, key)
        return problems

    def _damaged_files(self, meta: ListVersion) -> list[str]:
        """What is wrong with a version's stored files (missing, altered, out of the root)."""
        problems = []
        for name, digest in sorted(meta.files.items()):
            try:
                path = self._inside(meta, name)
            except CatalogSealError as exc:
                problems.append(f"{meta.ref}: {exc.message}")
                continue
            if not path.is_file():
                problems.append(f"{meta.ref}: stored {name} file is missing")
            elif file_sha256(path) != digest:
                problems.append(f"{meta.ref}: stored {name} file was altered "
                                "(sha256 differs)")
        return problems

    def _content_problems(self, meta: ListVersion, key: bytes | None) -> list[str]:
        """What is wrong with the entries of a version whose files are intact (those of a
        sensitive one are read only with its key)."""
        if meta.sensitive:
            if key is None:
                return []  # contents checked only with the key
            if key_id(key) != meta.key_id:
                return [f"{meta.ref}: encrypted with another key (key id "
                        f"{meta.key_id}); its contents were not checked"]
        try:
            counts = {t: len(k) for t, k in self._read_keys(meta, key).items()}
        except ScrubError as exc:
            return [f"{meta.ref}: {exc.message}"]
        if counts != meta.counts:
            return [f"{meta.ref}: entry counts differ from the catalog"]
        return []

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
            with atomic_path(target, private=meta.sensitive) as tmp, open(tmp, "wb") as handle:
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


def _check_digest(meta: ListVersion, type_name: str, digest: str) -> None:
    if digest != meta.files.get(type_name):
        raise ExternalSourceError(f"{meta.ref}: stored {type_name} file was altered (sha256 "
                                  "differs from the catalog)",
                                  hint="run `scrub lists verify`; restore the store from a "
                                       "backup or import the list again")


def _purpose(meta: ListVersion, type_name: str) -> str:
    return f"list:{meta.name}@{meta.version}:{type_name}"


def _file_name(type_name: str, sensitive: bool) -> str:
    return f"{type_name}.parquet.enc" if sensitive else f"{type_name}.parquet"


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
        if name not in old:
            added += len(new[name])
        elif name not in new:
            removed += len(old[name])
        else:
            before, after = old[name], new[name]
            added += int((~_member(after, before)).sum())
            removed += int((~_member(before, after)).sum())
    return added, removed



def _member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.isin(values, of)
    return KeySet(of).contains(values)
