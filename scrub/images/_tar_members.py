"""Tar members as columns (:class:`TarMembers`) and member paths as tar readers normalise
and group them."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import polars as pl

_BLOCK = tarfile.BLOCKSIZE


def normal_path(name: str) -> str:
    """A member path as readers group it: empty and ``.`` parts dropped (``./a//b.jpg`` ->
    ``a/b.jpg``). Names that leave the archive are refused by :func:`read_members`."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def normal_paths(names: pl.Series) -> pl.Series:
    """:func:`normal_path` of every name, in one vectorised pass."""
    needs = names.str.contains(r"(?:^|/)\.?(?:/|$)|^\.$|//")
    if not needs.any():
        return names
    parts = names.str.split("/").list.eval(
        pl.element().filter((pl.element() != "") & (pl.element() != ".")))
    return pl.select(pl.when(needs).then(parts.list.join("/")).otherwise(names)).to_series()


def leaves_archive(names: pl.Series) -> pl.Series:
    """Names that would be written outside the extraction folder: absolute, or with a ``..``
    part (``/`` or ``\\`` separated, as a Windows extractor splits them)."""
    return names.str.contains(r"^[/\\]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$)")


def split_member(name: str) -> tuple[str, str]:
    """(key, extension) of a member path: ``a/00012.jpg`` -> (``a/00012``, ``jpg``)."""
    folder, base = posixpath.split(normal_path(name))
    stem, dot, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext.lower() if dot else ""


@dataclass(frozen=True)
class Member:
    """Where one tar member lies: ``offset`` is its first header (long-name and pax headers
    included), ``offset_data`` its data."""

    name: str
    offset: int
    offset_data: int
    size: int
    type: bytes

    def isfile(self) -> bool:
        return self.type in (b"0", b"\0", b"7")


_FILE_TYPES = (b"0", b"\0", b"7")
#: Links, devices, folders and fifos: their size field is not data (refused when it is not 0).
_NO_DATA_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")


@dataclass(frozen=True)
class TarMembers(Sequence[Member]):
    """Every member of one tar, as columns: ``offset`` (first header, long-name and pax headers
    included), ``offset_data``, ``size`` (0 for directories and links), ``kind`` (the type byte)
    and ``names``. Indexing and iterating give :class:`Member` objects."""

    names: list[str]
    offset: np.ndarray
    offset_data: np.ndarray
    size: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> Member: ...
    @overload
    def __getitem__(self, index: slice) -> list[Member]: ...

    def __getitem__(self, index: int | slice) -> Member | list[Member]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Member(self.names[index], int(self.offset[index]), int(self.offset_data[index]),
                      int(self.size[index]), bytes([int(self.kind[index])]))

    def is_file(self) -> np.ndarray:
        return np.isin(self.kind, np.frombuffer(b"".join(_FILE_TYPES), dtype=np.uint8))

    def is_data(self) -> np.ndarray:
        """Members whose bytes a reader can get: regular files and members of a type unknown to
        tar (GNU tar extracts those as files), not links, folders or devices."""
        return ~np.isin(self.kind, _NO_DATA_KINDS)

    def paths(self) -> pl.Series:
        """Each member's normalised path (see :func:`normal_path`)."""
        return normal_paths(pl.Series(self.names, dtype=pl.String))

    def keys(self) -> pl.Series:
        """Each member's sample key (see :func:`split_member`), in one vectorised pass."""
        return self.paths().str.replace(_KEY_PATTERN, "")

    @classmethod
    def of(cls, members: list[Member]) -> TarMembers:
        def column(values: list[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.int64)

        return cls([m.name for m in members], column([m.offset for m in members]),
                   column([m.offset_data for m in members]), column([m.size for m in members]),
                   np.frombuffer(b"".join(m.type for m in members), dtype=np.uint8))


#: What a member path loses to become its key: from the first dot of its file name on.
_KEY_PATTERN = r"\.[^/]*$"

_NO_DATA_KINDS = np.frombuffer(b"".join(_NO_DATA_TYPES), dtype=np.uint8)
