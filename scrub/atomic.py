"""Atomic file output: write under a temporary name in the same folder, fsync, rename into place.

Also the checked opening of input files (:func:`open_regular`): a FIFO or device is refused, never
waited on. A failed write names its file; a full disk is a StorageError (exit 1), not bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from scrub.errors import UserInputError, from_os_error


class Remote(Protocol):
    """An object in object storage (:class:`scrub.storage.ObjectPath`): written whole."""

    remote: bool

    def upload(self, local: Path) -> None: ...

    def copy_from(self, other: Any) -> None: ...

    def write_bytes(self, data: bytes) -> int: ...

    def open(self, mode: str = "rb") -> Any: ...

    def rmtree(self) -> None: ...


#: Where a file is written: a local path, or an object in object storage.
Target = Path | Remote

# mkstemp creates 0600 files; published outputs get the usual permissions under the umask.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(final: Target, *, tmp_dir: Path | None = None, private: bool = False,
                durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed to ``final``, else removed.

    ``tmp_dir`` must be on the same filesystem as ``final`` (it defaults to ``final``'s folder).
    ``private`` keeps the file readable by its owner only (0600), for keys and sensitive data.
    ``durable=False`` skips the fsync, for files whose loss only costs redoing work.
    A failing OS call is raised as the ScrubError that names the file (``final``, not the
    temporary name) and why (:func:`scrub.errors.from_os_error`; a full disk is a StorageError).
    """
    if not isinstance(final, Path):  # written locally, uploaded whole once complete
        with _remote_staging(final) as tmp:
            yield tmp
        return
    folder = tmp_dir or final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, final) from None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        exc.filename = None  # a random temporary name: report the file that was asked for
        raise _write_error(exc, final) from None
    os.close(fd)
    tmp = Path(name)
    try:
        if not private:
            os.chmod(tmp, _FILE_MODE)
        yield tmp
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, final, tmp) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remote(path: object) -> bool:
    """Whether ``path`` is an object storage path (:class:`scrub.storage.ObjectPath`)."""
    return bool(getattr(path, "remote", False))


@contextmanager
def _remote_staging(final: Remote) -> Iterator[Path]:
    """A local temporary file uploaded to ``final`` once the block ends without error."""
    fd, name = tempfile.mkstemp(prefix=".scrub-upload.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        final.upload(tmp)
    finally:
        tmp.unlink(missing_ok=True)


def publish_file(tmp: Path, final: Target) -> None:
    """Move the finished local file ``tmp`` to ``final``: a rename, or an upload (then ``tmp``
    goes) when ``final`` lies in object storage."""
    if isinstance(final, Path):
        os.replace(tmp, final)
    else:
        final.upload(tmp)
        tmp.unlink(missing_ok=True)


def remove_tree(folder: Target) -> None:
    """Remove a folder and what it holds (every object under a prefix in object storage)."""
    if isinstance(folder, Path):
        shutil.rmtree(folder)
    else:
        folder.rmtree()


def _write_error(exc: OSError, final: Path, tmp: Path | None = None) -> Exception:
    """A failed write as an error naming the file (a full disk is not the input's fault); the
    temporary name is reported as the final one, which is what the operator asked for."""
    if tmp is not None and exc.filename is not None and os.fsdecode(exc.filename) == str(tmp):
        exc.filename = None
    return from_os_error(exc, final) or exc


def open_regular(path: Path | str, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading, only if it is a regular file (symbolic links followed).

    A FIFO, socket, device or folder would block forever or never end: it is refused with a
    :class:`UserInputError` naming the file. The open itself never waits (``O_NONBLOCK`` until
    ``fstat`` has shown a regular file), and the check is on the opened file, not on its name.
    """
    if _remote(path):
        opened: BinaryIO = getattr(path, "open")("rb")  # noqa: B009 (an ObjectPath)
        return opened
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise (from_os_error(exc, path) or UserInputError(f"{path}: cannot open the {what}")) \
            from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserInputError(f"{path}: {_kind(mode)}, not a regular {what}",
                                 hint="name the file itself; pipes, devices and folders are "
                                      "not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: Path | str, what: str = "file") -> bytes:
    """The bytes of a regular file (:func:`open_regular`'s checks)."""
    with open_regular(path, what) as handle:
        return handle.read()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def atomic_write_bytes(final: Target, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``final`` atomically (one request in object storage)."""
    if not isinstance(final, Path):
        final.write_bytes(data)
        return
    with atomic_path(final, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(final: Target, obj: object, *, durable: bool = True) -> None:
    """Write ``obj`` as stable, indented JSON (sorted keys, trailing newline) atomically."""
    atomic_write_bytes(final, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(),
                       durable=durable)


def file_sha256(path: Target) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with (open(path, "rb") if isinstance(path, Path) else path.open("rb")) as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: Target, target: Target) -> None:
    """``target`` with ``source``'s bytes: a hard link where possible (no copy), else a copy."""
    if not isinstance(target, Path):
        if isinstance(source, Path):
            target.upload(source)
        else:
            target.copy_from(source)
        return
    if not isinstance(source, Path):  # an object to a local file: read in blocks
        with source.open("rb") as handle, open(target, "wb") as out:
            shutil.copyfileobj(handle, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
        return
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
