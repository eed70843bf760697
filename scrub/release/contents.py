"""What lies in a release's folders, locally or in object storage: the entries beyond those a
listing expects (for ``scrub release verify``), whether a file is there, and its parquet footer.
An object store has no folders and no links: a prefix some object lies under counts as a
folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import file_sha256
from scrub.errors import brief
from scrub.release.signed import Location
from scrub.storage import ObjectPath
from scrub.storage.failures import translated


def unlisted(folder: Location, expected: set[str], *,
             listed_by: str = "the manifest") -> list[str]:
    """What lies in ``folder`` besides the ``expected`` files (relative POSIX paths): any other
    file, folder or symbolic link, at any depth, hidden or not. ``listed_by`` names what
    lists the expected files, in the messages."""
    if not folder.is_dir():
        return [f"{folder}: missing"]
    parents = {"/".join(parts[:i]) for parts in (name.split("/") for name in expected)
               for i in range(1, len(parts))}
    if isinstance(folder, ObjectPath):
        return _unlisted_objects(folder, expected, parents, listed_by)
    problems: list[str] = []
    walk = os.walk(folder, onerror=lambda exc: problems.append(
        f"{exc.filename}: cannot be listed ({brief(exc)})"))
    for root, dirs, names in walk:
        base = Path(root).relative_to(folder)
        for entry in sorted(dirs + names):
            path, relative = Path(root) / entry, (base / entry).as_posix()
            if path.is_symlink():
                problems.append(f"{path}: a symbolic link, not in {listed_by} (a release "
                                "holds plain files only)")
            elif entry in dirs and relative not in parents:
                problems.append(_unlisted_folder(path, listed_by))
            elif entry not in dirs and relative not in expected:
                problems.append(f"{path}: not in {listed_by}")
        dirs[:] = [d for d in dirs if (base / d).as_posix() in parents
                   and not (Path(root) / d).is_symlink()]
    return problems


def _unlisted_folder(path: Location, listed_by: str) -> str:
    return (f"{path}: a folder {listed_by} does not list" if listed_by == "the manifest"
            else f"{path}: a folder not in {listed_by}")


def _unlisted_objects(folder: ObjectPath, expected: set[str], parents: set[str],
                      listed_by: str) -> list[str]:
    """:func:`unlisted` under a prefix: every object, at any depth; a prefix no expected file
    lies under is told once, as a folder."""
    problems: list[str] = []
    told: set[str] = set()
    start = len(folder.key) + 1 if folder.key else 0
    for path, _ in folder.walk_files():
        relative = path.key[start:]
        parts = relative.split("/")
        outside = next(("/".join(parts[:i]) for i in range(1, len(parts))
                        if "/".join(parts[:i]) not in parents), None)
        if outside is not None:
            if outside not in told:
                told.add(outside)
                problems.append(_unlisted_folder(folder / outside, listed_by))
        elif relative not in expected:
            problems.append(f"{path}: not in {listed_by}")
    return problems


#: Files in object storage checked at once (each one read whole, in ranged requests).
REMOTE_CHECKS = 8


def check_files(located: list[tuple[Location, int | None, str]],
                advance: Callable[[int], None]) -> list[str]:
    """The problems of a variant's files, in order: ``located`` gives each one's path, its row
    count if it is a shard (else None) and its sha256; ``advance(rows)`` follows each shard
    checked. Files in object storage are checked several at once."""
    remote = any(isinstance(path, ObjectPath) for path, _, _ in located)
    problems = []
    with ThreadPoolExecutor(REMOTE_CHECKS if remote else 1) as pool:
        found = pool.map(lambda entry: check_file(*entry), located)
        for (_, rows, _), problem in zip(located, found, strict=True):
            if rows is not None:
                advance(rows)
            if problem is not None:
                problems.append(problem)
    return problems


def check_file(path: Location, rows: int | None, digest: str) -> str | None:
    """What is wrong with a listed file (missing, not a plain file, another sha256; a shard
    that is not parquet or holds another number of ``rows``), or None."""
    if not path.is_file() or path.is_symlink():
        return f"{path}: missing" if not lexists(path) else f"{path}: not a plain file"
    if file_sha256(path) != digest:
        return f"{path}: sha256 differs from the manifest"
    if rows is None:
        return None
    try:
        found = parquet_file(path).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        return f"{path}: not a readable parquet file ({brief(exc)})"
    return None if found == rows else f"{path}: {found} rows, the manifest says {rows}"


def lexists(path: Location) -> bool:
    """Whether anything lies at ``path`` (a dangling link counts; a prefix counts)."""
    return path.exists() if isinstance(path, ObjectPath) else os.path.lexists(path)


def parquet_file(path: Location) -> pq.ParquetFile:
    """A parquet file's footer: OSError or an Arrow error when it cannot be read (an object in
    object storage: read in ranged requests; a refused access is the store's error)."""
    if isinstance(path, ObjectPath):
        with translated(path):
            return pq.ParquetFile(path.open("rb"), pre_buffer=True)
    return pq.ParquetFile(path)
