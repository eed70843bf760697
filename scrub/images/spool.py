"""Tars in object storage, read through a local copy streamed from the object.

Every byte of a tar is read when it is hashed, scored or scrubbed, and its headers are all
checked before any of it is used (:func:`scrub.images.tars.read_members`); so a tar in object
storage is copied once, in bounded blocks of ranged reads, to a local temporary file that the
same tar reader then reads. One reader means the same checks, the same bytes and the same errors
as a local run; memory stays at one block whatever the tar's size, and the copy is removed when
the shard is done.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scrub.atomic import link_or_copy
from scrub.errors import InvalidDatasetError, ScrubError, StorageError, brief, from_os_error
from scrub.storage import ObjectPath
from scrub.storage.failures import translated

#: Bytes per ranged read of an object being copied (what the copy holds in memory).
BLOCK = 8 << 20


@contextmanager
def local_tar(path: Path | ObjectPath, folder: Path | None = None) -> Iterator[Path]:
    """``path`` itself when it is local; a tar in object storage as a local copy in ``folder``
    (the system's temporary folder by default), removed when the block ends. A missing or
    unreadable object is an :class:`InvalidDatasetError` worded as for a local tar, and a
    ScrubError raised in the block names the object where it named the copy."""
    if not isinstance(path, ObjectPath):
        yield path
        return
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".copy", dir=folder)
    os.close(fd)
    copy = Path(name)
    try:
        try:
            download(path, copy)
        except OSError as exc:
            disk = from_os_error(exc, copy)
            if isinstance(disk, StorageError):  # this machine's disk, not the input
                raise disk from None
            raise InvalidDatasetError(f"{path}: not a readable tar ({brief(exc)})") from None
        try:
            yield copy
        except ScrubError as exc:
            _rename(exc, str(copy), str(path))
            raise
    finally:
        copy.unlink(missing_ok=True)


def _rename(exc: ScrubError, local: str, shown: str) -> None:
    """Name the object the user gave where ``exc`` names its local copy."""
    exc.message = exc.message.replace(local, shown)
    exc.args = (exc.message, *exc.args[1:])
    if exc.hint is not None:
        exc.hint = exc.hint.replace(local, shown)


def download(source: ObjectPath, target: Path, *, durable: bool = False) -> int:
    """Copy the object ``source`` to the local file ``target`` in :data:`BLOCK`-sized ranged
    reads (fsynced when ``durable``); the bytes copied. A missing object is the
    :class:`FileNotFoundError` a local file gives (named by its location); a refused or
    unreachable store a ScrubError (exit 3)."""
    try:
        handle = source.open("rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(source)) from None
    copied = 0
    with handle, open(target, "wb") as out, translated(source):
        while True:
            block = handle.read(BLOCK)
            if not block:
                break
            out.write(block)
            copied += len(block)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    return copied


def copy_to_local(source: Path | ObjectPath, target: Path) -> None:
    """``target`` with ``source``'s bytes (fsynced): downloaded from object storage, else a
    local link or copy (:func:`scrub.atomic.link_or_copy`)."""
    if isinstance(source, ObjectPath):
        download(source, target, durable=True)
    else:
        link_or_copy(source, target)
