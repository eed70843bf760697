"""Paths in object storage (``s3://bucket/prefix``, and any URI pyarrow has a filesystem for)
with the part of :class:`pathlib.Path` that scrub's jobs use.

An :class:`ObjectPath` has no ``__fspath__``: handing one to ``open()`` or ``os`` fails loudly
instead of writing a local folder named ``s3:``. Reads go through pyarrow's filesystem (ranged
requests); writes through :mod:`scrub.storage.writes` (an object appears only when complete).
Credentials, region and endpoint come from the standard AWS settings of the process's
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_PROFILE``); a pickled path holds its URI only, never a credential.
"""

from __future__ import annotations

import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrub.storage import filesystems
from scrub.storage.failures import translated

#: ``scheme://`` at the start of a location: object storage (``file://`` is a local path).
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")


def is_uri(value: object) -> bool:
    """Whether ``value`` names object storage (``s3://...``; ``file://`` is local)."""
    if not isinstance(value, str):
        return False
    found = _URI.match(value)
    return found is not None and found.group(1).lower() != "file"


def location(value: str | Path | ObjectPath) -> Path | ObjectPath:
    """A dataset or output location as the user gave it: a local path or an object path."""
    if isinstance(value, (Path, ObjectPath)):
        return value
    if is_uri(value):
        return ObjectPath(value)
    found = _URI.match(value)
    if found is not None:  # file:///x
        return Path("/" + found.group(2).lstrip("/"))
    return Path(value)


def is_remote(path: object) -> bool:
    """Whether ``path`` lies in object storage."""
    return isinstance(path, ObjectPath)


def _refuse_userinfo(scheme: str, bucket: str, key: str) -> None:
    """Refuse ``s3://KEY:SECRET@bucket/...`` (pyarrow would take the credentials from it):
    credentials come from the environment only, and a location is printed and stored (job
    records, reports), so the error shows the location without them."""
    userinfo, at, host = bucket.rpartition("@")
    if at and (scheme in ("s3", "gs", "gcs") or ":" in userinfo):
        from scrub.errors import UserInputError

        shown = f"{scheme}://...@{host}" + (f"/{key}" if key else "")
        raise UserInputError(f"{shown}: credentials in a location are refused (they would be "
                             "printed and stored with it)",
                             hint="give them in the environment (AWS_ACCESS_KEY_ID, "
                                  "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and the location "
                                  "without them")


@dataclass(frozen=True)
class ObjectStat:
    """What :meth:`ObjectPath.stat` tells of an object (the fields scrub reads)."""

    st_size: int
    st_mtime_ns: int
    st_mode: int = stat.S_IFREG | 0o644


class ObjectPath:
    """``scheme://bucket/key`` with pathlib's names: ``/``, ``name``, ``parent``,
    ``with_name``, ``is_file``, ``iterdir``, ``read_bytes``, ``open``..."""

    __slots__ = ("scheme", "bucket", "key")
    remote = True

    def __init__(self, uri: str) -> None:
        found = _URI.match(uri)
        if found is None:
            raise ValueError(f"not an object storage URI: {uri!r}")
        scheme, rest = found.group(1).lower(), found.group(2)
        bucket, _, key = rest.partition("/")
        _refuse_userinfo(scheme, bucket, key)
        self.scheme = "gs" if scheme == "gcs" else scheme
        self.bucket = bucket
        self.key = posixpath.normpath(key).strip("/") if key.strip("/") else ""
        if self.key == ".":
            self.key = ""

    # --- pure path operations -------------------------------------------------------------
    def _with_key(self, key: str) -> ObjectPath:
        return ObjectPath(f"{self.scheme}://{self.bucket}/{key}")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.key}" if self.key else "")

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ObjectPath, (str(self),))

    def __truediv__(self, part: str | Path) -> ObjectPath:
        part = str(part).strip("/")
        return self._with_key(f"{self.key}/{part}" if self.key else part)

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix if self.name else ""

    @property
    def stem(self) -> str:
        return Path(self.name).stem if self.name else ""

    @property
    def parent(self) -> ObjectPath:
        return self._with_key(posixpath.dirname(self.key))

    @property
    def parts(self) -> tuple[str, ...]:
        return (f"{self.scheme}://{self.bucket}", *[p for p in self.key.split("/") if p])

    def with_name(self, name: str) -> ObjectPath:
        if not self.key:
            raise ValueError(f"{self} has an empty name")
        return self.parent / name

    def with_suffix(self, suffix: str) -> ObjectPath:
        return self.with_name(self.stem + suffix)

    def as_posix(self) -> str:
        return str(self)

    def resolve(self) -> ObjectPath:
        return self

    def absolute(self) -> ObjectPath:
        return self

    def expanduser(self) -> ObjectPath:
        return self

    def is_relative_to(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (
            other == self or str(self).startswith(str(other).rstrip("/") + "/"))

    @property
    def fs_path(self) -> str:
        """The path pyarrow's filesystem takes: ``bucket/key``."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    # --- reading ----------------------------------------------------------------------------
    @property
    def filesystem(self) -> Any:
        """This scheme's pyarrow filesystem, built once per process from the environment."""
        return filesystems.for_scheme(self.scheme, str(self))

    def _info(self) -> Any:
        with translated(self):
            return self.filesystem.get_file_info(self.fs_path)

    def stat(self) -> ObjectStat:
        import pyarrow.fs as pafs

        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(2, "no such object", str(self))
        if info.type == pafs.FileType.Directory:
            return ObjectStat(0, 0, stat.S_IFDIR | 0o755)
        return ObjectStat(int(info.size or 0), int(info.mtime_ns or 0))

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return bool(self._info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        """Whether some object lies under this prefix (object stores have no empty folders;
        a bucket is a folder when it exists)."""
        import pyarrow.fs as pafs

        if not self.key:
            return filesystems.bucket_exists(self)
        return bool(self._info().type == pafs.FileType.Directory)

    def is_symlink(self) -> bool:
        return False

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and prefixes directly under this one, by name."""
        for info in filesystems.listing(self, recursive=False):
            yield self / posixpath.basename(info.path.rstrip("/"))

    def list_children(self) -> list[tuple[ObjectPath, bool]]:
        """The objects and prefixes directly under this one, by name, each with whether it is
        an object (True) or a prefix (False): :meth:`iterdir` and ``is_file`` in one request
        per thousand."""
        return [(self / posixpath.basename(info.path.rstrip("/")), info.type.name == "File")
                for info in filesystems.listing(self, recursive=False)]

    def walk_files(self) -> list[tuple[ObjectPath, int]]:
        """Every object under this prefix, at any depth, with its size."""
        return [(self._with_key(info.path.partition("/")[2]), int(info.size or 0))
                for info in filesystems.listing(self, recursive=True)
                if info.type.name == "File"]

    def open(self, mode: str = "rb") -> Any:
        """A seekable, ranged-read file of the object (read modes only; writes go through
        :mod:`scrub.storage.writes`)."""
        if mode not in ("rb", "r"):
            raise ValueError(f"{self}: objects are written whole (scrub.storage.writes), not "
                             f"opened with mode {mode!r}")
        if mode == "r":
            import io

            return io.TextIOWrapper(self.open("rb"), encoding="utf-8")
        with translated(self):
            return self.filesystem.open_input_file(self.fs_path)

    def etag(self) -> str | None:
        """The object's ETag (one request): it changes whenever the object is written again
        with other bytes, even of the same size within the same second, which its size and
        Last-Modified (whole seconds) would not tell; None when the store gives none."""
        with self.open("rb") as handle:
            found = (handle.metadata() or {}).get("ETag")
        return found.decode("utf-8", "replace") if isinstance(found, bytes) else found

    def read_bytes(self) -> bytes:
        with self.open("rb") as handle:
            return bytes(handle.read())

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    # --- writing (whole objects, each appearing complete or not at all) ---------------------
    def write_bytes(self, data: bytes) -> int:
        from scrub.storage import writes

        writes.put_bytes(self, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def upload(self, local: Path) -> None:
        """Make this object a copy of the finished local file ``local`` (multipart for large
        files; an upload that fails is aborted, never completed partial)."""
        from scrub.storage import writes

        writes.upload_file(self, local)

    def copy_from(self, other: ObjectPath) -> None:
        """Make this object a server-side copy of ``other``."""
        from scrub.storage import writes

        writes.copy_object(other, self)

    def unlink(self, missing_ok: bool = False) -> None:
        from scrub.storage import writes

        if not missing_ok and not self.is_file():
            raise FileNotFoundError(2, "no such object", str(self))
        writes.delete_objects(self, [self])

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is written under it."""

    def abort_uploads(self) -> int:
        """Abort incomplete multipart uploads under this prefix (a killed run's); how many."""
        from scrub.storage import writes

        return writes.abort_uploads(self)

    def rmtree(self) -> None:
        """Delete every object under this prefix (and aborts uploads left under it)."""
        from scrub.storage import writes

        writes.delete_objects(self, [path for path, _ in self.walk_files()])
        writes.abort_uploads(self)
