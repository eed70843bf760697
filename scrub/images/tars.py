"""Webdataset tars as img2dataset writes them: ``NNNNN.tar`` holding ``{key}.jpg``,
``{key}.txt``, ``{key}.json``... with a sidecar ``NNNNN.parquet``.

A sample is the run of consecutive members sharing a key (the member path up to the first dot of
its file name, as webdataset reads it). Rewriting a tar copies the raw bytes of every kept member
(headers included) in order, so a scrubbed tar differs from its input only by the removed
samples: no member is re-encoded, no header rewritten.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import tarfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import polars as pl

from scrub.errors import InvalidDatasetError, brief

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


def split_member(name: str) -> tuple[str, str]:
    """(key, extension) of a member path: ``a/00012.jpg`` -> (``a/00012``, ``jpg``)."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext.lower() if dot else ""


@dataclass
class Sample:
    """One sample's members, in tar order."""

    key: str
    members: list[Member] = field(default_factory=list)
    #: True when the key was already seen earlier in the tar.
    repeated: bool = False

    @property
    def images(self) -> list[Member]:
        return [m for m in self.members if split_member(m.name)[1] in IMAGE_EXTENSIONS]


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
_NO_DATA_TYPES = (b"1", b"2", b"5")


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

    def keys(self) -> pl.Series:
        """Each member's sample key (see :func:`split_member`), in one vectorised pass."""
        return pl.Series(self.names, dtype=pl.String).str.replace(_KEY_PATTERN, "")

    @classmethod
    def of(cls, members: list[Member]) -> TarMembers:
        def column(values: list[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.int64)

        return cls([m.name for m in members], column([m.offset for m in members]),
                   column([m.offset_data for m in members]), column([m.size for m in members]),
                   np.frombuffer(b"".join(m.type for m in members), dtype=np.uint8))


#: What a member path loses to become its key: from the first dot of its file name on.
_KEY_PATTERN = r"\.[^/]*$"


def read_members(path: Path) -> TarMembers:
    """Every member of a tar, from its headers only (no data is read), or
    :class:`InvalidDatasetError` naming the tar when it is truncated or corrupt.

    ustar tars (what Python's tarfile and webdataset write) are read with numpy: every block
    carrying the ustar magic is a candidate header, each candidate's size gives the block of the
    next one, and the chain from block 0 through those links is the member list; then every
    header's checksum is checked at once. Tars with long-name, pax or pre-ustar headers take a
    header-by-header walk that reads them all. Both are many times faster than :mod:`tarfile` on
    tars of many small members.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            raise InvalidDatasetError(f"{path}: empty file, not a tar")
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                   access=mmap.ACCESS_READ) as view:
            blocks = np.frombuffer(view, dtype=np.uint8)
            grid = blocks[: size // _BLOCK * _BLOCK].reshape(-1, _BLOCK)
            try:
                found = _chain(grid)
                if found is None:
                    members, positions = _scan(view, size, path)
                    at = np.asarray(positions, dtype=np.int64) // _BLOCK
                    fields = _HeaderFields.gather(grid, at)
                else:
                    at, sizes, fields = found
                    members = _members_of(grid, at, sizes, fields)
                _check_sums(fields, at, path)
            finally:
                del blocks, grid
    except (OSError, ValueError) as exc:
        raise InvalidDatasetError(f"{path}: not a readable tar ({brief(exc)})") from exc
    return members


@dataclass(frozen=True)
class _HeaderFields:
    """The fields of many headers, gathered in one pass over their blocks."""

    names: np.ndarray  #: (n, 100) name fields
    sizes: np.ndarray  #: (n, 12) size fields
    checksums: np.ndarray  #: (n, 8) checksum fields
    sums: np.ndarray  #: each header's byte sum
    kinds: np.ndarray
    prefixed: np.ndarray  #: whether the ustar prefix field is used

    @classmethod
    def gather(cls, grid: np.ndarray, rows: np.ndarray) -> _HeaderFields:
        count = len(rows)
        names = np.empty((count, 100), dtype=np.uint8)
        sizes = np.empty((count, 12), dtype=np.uint8)
        checksums = np.empty((count, 8), dtype=np.uint8)
        sums = np.empty(count, dtype=np.int64)
        kinds = np.empty(count, dtype=np.uint8)
        prefixed = np.empty(count, dtype=bool)
        step = 2048  # a piece at a time stays in cache: one read of each header block
        buffer = np.empty((min(step, count), _BLOCK), dtype=np.uint8)
        for first in range(0, count, step):
            part = slice(first, min(first + step, count))
            piece = np.take(grid, rows[part], axis=0, out=buffer[: part.stop - first])
            names[part] = piece[:, :100]
            sizes[part] = piece[:, 124:136]
            checksums[part] = piece[:, 148:156]
            kinds[part] = piece[:, 156]
            prefixed[part] = piece[:, 345] != 0
            sums[part] = piece.sum(axis=1, dtype=np.uint32)
        return cls(names, sizes, checksums, sums, kinds, prefixed)

    def take(self, index: np.ndarray) -> _HeaderFields:
        return _HeaderFields(self.names[index], self.sizes[index], self.checksums[index],
                             self.sums[index], self.kinds[index], self.prefixed[index])


def _chain(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, _HeaderFields] | None:
    """(header block numbers, member sizes, header fields) of a plain ustar tar (``grid``: its
    blocks), or None when it needs the header-by-header walk (other header kinds, odd fields,
    truncation: the walk then reads or reports them)."""
    count = len(grid)
    if count == 0:
        return None
    candidates = np.flatnonzero(grid[:, 257] == _MAGIC[0])
    candidates = candidates[(grid[candidates, 257:262] == _MAGIC).all(axis=1)]
    if len(candidates) == 0 or candidates[0] != 0:
        return None
    fields = _HeaderFields.gather(grid, candidates)
    sizes, parsed = _octal_columns(fields.sizes)
    if not parsed.all() or np.isin(fields.kinds, _SPECIAL_KINDS).any():
        return None
    sizes[np.isin(fields.kinds, _NO_DATA_KINDS)] = 0  # directories and links: not data
    following = candidates + 1 + -(-sizes // _BLOCK)
    if np.array_equal(following[:-1], candidates[1:]):
        index = np.arange(len(candidates))  # the usual case: every candidate is a header
    else:  # the magic also occurs inside data: follow the links from block 0
        slot = np.full(count + 1, -1, dtype=np.int64)
        slot[candidates] = np.arange(len(candidates))
        nexts = slot[np.minimum(following, count)].tolist()
        chain = [0]
        at = nexts[0]
        while at >= 0:
            chain.append(at)
            at = nexts[at]
        index = np.asarray(chain, dtype=np.int64)
        fields = fields.take(index)
    end = int(following[index[-1]])
    if end >= count or grid[end].any():
        return None  # truncated, or a header the fast path does not read: let the walk say
    return candidates[index], sizes[index], fields


def _members_of(grid: np.ndarray, at: np.ndarray, sizes: np.ndarray,
                fields: _HeaderFields) -> TarMembers:
    raw = fields.names.view("S100").ravel().tolist()
    names = b"\0".join(raw).decode("utf-8", "surrogateescape").split("\0")
    if len(names) != len(raw):  # bytes after a NUL inside a name field: not part of the name
        names = [n.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") for n in raw]
    for row in np.flatnonzero(fields.prefixed).tolist():  # ustar prefix: a long path
        names[row] = _ustar_name(grid[at[row]].tobytes())
    for row in np.flatnonzero(fields.kinds == ord("5")).tolist():
        names[row] = names[row].rstrip("/")
    offset = at * _BLOCK
    return TarMembers(names, offset, offset + _BLOCK, sizes, fields.kinds)


def _check_sums(fields: _HeaderFields, at: np.ndarray, path: Path) -> None:
    """Every header's checksum (the sum of its bytes, the checksum field read as spaces)."""
    if len(at) == 0:
        return
    computed = fields.sums - fields.checksums.sum(axis=1, dtype=np.int64) + 8 * 32
    stored, parsed = _octal_columns(fields.checksums)
    for row in np.flatnonzero(~parsed).tolist():
        stored[row] = _checksum_field(fields.checksums[row].tobytes())
    bad = np.flatnonzero(computed != stored)
    if len(bad):
        raise InvalidDatasetError(f"{path}: corrupt tar (bad header checksum at "
                                  f"byte {int(at[bad[0]]) * _BLOCK})")


def _octal_columns(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Octal numbers in fixed-width header fields (one per row): (values, parsed). A field
    parses when it is optional spaces, octal digits, then only NULs or spaces (an empty field
    is 0); other rows (base-256 sizes, stray bytes) are marked unparsed for the caller."""
    digit = (fields >= ord("0")) & (fields <= ord("7"))
    blank = (fields == 32) | (fields == 0)
    width = int(np.argmin(digit[0])) if not digit[0].all() else fields.shape[1]
    if width and digit[:, :width].all() and blank[:, width:].all():  # the usual "%0*o\0"
        powers = np.int64(8) ** np.arange(width - 1, -1, -1, dtype=np.int64)
        values = (fields[:, :width].astype(np.int64) - ord("0")) @ powers
        return values, np.ones(len(fields), dtype=bool)
    later = np.cumsum(digit[:, ::-1], axis=1)[:, ::-1] - digit
    values = (np.where(digit, fields.astype(np.int64) - ord("0"), 0) << (3 * later)).sum(axis=1)
    seen = np.cumsum(digit, axis=1)
    total = seen[:, -1:]
    before = (seen == 0) & ~digit
    after = (seen == total) & ~digit & (total > 0)
    leading_ok = np.where(before, fields == 32, True) | (total == 0)
    contiguous = digit | before | after
    parsed = (contiguous & leading_ok & np.where(after | ((total == 0) & ~digit), blank, True)
              ).all(axis=1)
    return values, parsed


_MAGIC = np.frombuffer(b"ustar", dtype=np.uint8)
_SPECIAL_KINDS = np.frombuffer(b"LxgKS", dtype=np.uint8)
_NO_DATA_KINDS = np.frombuffer(b"125", dtype=np.uint8)


def _scan(view: mmap.mmap, size: int, path: Path) -> tuple[TarMembers, list[int]]:
    members: list[Member] = []
    headers: list[int] = []
    position = 0
    start: int | None = None
    long_name: str | None = None
    while True:
        if position + _BLOCK > size:
            if position >= size and members:
                # tar and Python's tarfile accept this, but every writer of webdatasets ends a
                # tar with zero blocks: a file cut just after a member (a copy stopped on a page
                # boundary) would otherwise pass for a complete, shorter shard
                raise InvalidDatasetError(
                    f"{path}: truncated tar (no end-of-archive blocks after the last member, "
                    f"at byte {position})", hint="download the shard again")
            raise InvalidDatasetError(f"{path}: truncated tar (a header is cut short)",
                                      hint="download the shard again")
        header = view[position: position + _BLOCK]
        if header == _ZERO_BLOCK:
            break
        headers.append(position)
        kind = header[156:157]
        length = _octal(header[124:136], path, position)
        data_at = position + _BLOCK
        padded = -(-length // _BLOCK) * _BLOCK
        if kind in _NO_DATA_TYPES:  # directories and links: the size field is not data
            length = padded = 0
        if data_at + length > size:
            raise InvalidDatasetError(f"{path}: truncated tar (member data runs past the end)",
                                      hint="download the shard again")
        if start is None:
            start = position
        if kind in (b"L", b"x", b"g"):  # a long name or pax header for the next member
            extra = view[data_at: data_at + length]
            if kind == b"L":
                long_name = extra.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"x":
                long_name = _pax_path(extra) or long_name
            position = data_at + padded
            continue
        name = long_name or _ustar_name(header)
        if kind == b"5":
            name = name.rstrip("/")
        members.append(Member(name, start, data_at, length, kind))
        position = data_at + padded
        start, long_name = None, None
    return TarMembers.of(members), headers


def _checksum_field(field: bytes) -> int:
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return -1


_ZERO_BLOCK = bytes(_BLOCK)


def _octal(field: bytes, path: Path, position: int) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise InvalidDatasetError(f"{path}: corrupt tar (bad size field at byte {position})") \
            from None


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] in (b"ustar\x00", b"ustar ") and header[345:500].strip(b"\0"):
        prefix = header[345:500].split(b"\0", 1)[0]
        name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_path(records: bytes) -> str | None:
    path = None
    while records:
        length_text, _, rest = records.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            return path
        record = records[len(length_text) + 1: length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        records = records[length:]
    return path


def group_samples(members: TarMembers) -> list[Sample]:
    """Consecutive file members with one key form a sample; directories are not samples."""
    samples: list[Sample] = []
    seen: set[str] = set()
    files = members.is_file()
    for index, key in enumerate(members.keys().to_list()):
        if not files[index]:
            continue
        member = members[index]
        if samples and samples[-1].key == key:
            samples[-1].members.append(member)
            continue
        samples.append(Sample(key, [member], repeated=key in seen))
        seen.add(key)
    return samples


def iter_image_bytes(path: Path, samples: list[Sample]) -> Iterator[tuple[Sample, bytes | None]]:
    """Each sample with the bytes of its first image member (None when it has none)."""
    try:
        with open(path, "rb") as handle:
            for sample in samples:
                images = sample.images
                if not images:
                    yield sample, None
                    continue
                handle.seek(images[0].offset_data)
                data = handle.read(images[0].size)
                if len(data) != images[0].size:
                    raise InvalidDatasetError(f"{path}: truncated tar at {images[0].name}")
                yield sample, data
    except OSError as exc:
        raise InvalidDatasetError(f"{path}: cannot read ({brief(exc)})") from exc


def rewrite_tar(source: Path, target: Path, members: TarMembers,
                drop: Collection[str]) -> int:
    """Write ``source`` minus the members whose key is in ``drop`` to ``target`` (fsynced);
    return the number of members removed. Kept members are copied byte for byte, in order:
    each run of adjacent kept members is one ``sendfile`` call."""
    removed = members.is_file() & members.keys().is_in(
        pl.Series(list(drop), dtype=pl.String).implode()).to_numpy()
    kept = ~removed
    starts = members.offset[kept]
    stops = members.offset_data[kept] + -(-members.size[kept] // _BLOCK) * _BLOCK
    breaks = np.flatnonzero(starts[1:] != stops[:-1]) + 1
    span_starts = np.concatenate([starts[:1], starts[breaks]]).tolist() if len(starts) else []
    span_stops = np.concatenate([stops[breaks - 1], stops[-1:]]).tolist() if len(stops) else []
    with open(source, "rb") as src, open(target, "wb") as dst:
        written = 0
        for start, stop in zip(span_starts, span_stops):
            written += _copy_range(src, dst, start, stop - start)
        end = b"\0" * (2 * _BLOCK)
        written += len(end)
        dst.write(end + b"\0" * (-written % _RECORD))
        dst.flush()
        os.fsync(dst.fileno())
    return int(removed.sum())


def _copy_range(src, dst, offset: int, length: int) -> int:  # type: ignore[no-untyped-def]
    dst.flush()
    done = 0
    while done < length:
        sent = os.sendfile(dst.fileno(), src.fileno(), offset + done, length - done)
        if sent == 0:
            raise InvalidDatasetError(f"{src.name}: truncated tar")
        done += sent
    return done
