"""Atomic file output: write under a temporary name in the same folder, fsync, rename into place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp creates 0600 files; published outputs get the usual permissions under the umask.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(final: Path, *, tmp_dir: Path | None = None, private: bool = False,
                durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed to ``final``, else removed.

    ``tmp_dir`` must be on the same filesystem as ``final`` (it defaults to ``final``'s folder).
    ``private`` keeps the file readable by its owner only (0600), for keys and sensitive data.
    ``durable=False`` skips the fsync, for files whose loss only costs redoing work.
    """
    folder = tmp_dir or final.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=folder)
    os.close(fd)
    tmp = Path(name)
    if not private:
        os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(final: Path, obj: object, *, durable: bool = True) -> None:
    """Write ``obj`` as stable, indented JSON (sorted keys, trailing newline) atomically."""
    atomic_write_bytes(final, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(),
                       durable=durable)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` with ``source``'s bytes: a hard link where possible (no copy), else a copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
