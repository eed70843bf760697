"""Webdataset tars as img2dataset writes them: ``NNNNN.tar`` holding ``{key}.jpg``,
``{key}.txt``, ``{key}.json``... with a sidecar ``NNNNN.parquet``.

A sample is the run of consecutive members sharing a key (the member path up to the first dot of
its file name, as webdataset reads it). Member paths are normalised first (``./a//b.jpg`` is
``a/b.jpg``); a tar whose member names leave the archive (``/x``, ``../x``) or whose layout tar
readers could read differently (links or devices carrying data, sparse members, bytes after the
end-of-archive blocks) is refused, so that every reader sees the members scrub matched. Rewriting
a tar copies the raw bytes of every kept member (headers included) in order, so a scrubbed tar
differs from its input only by the removed samples: no member is re-encoded, no header rewritten.
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

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif",
                              "tiff", "ppm", "pgm", "pbm", "pnm", "avif", "heic", "heif", "ico",
                              "jp2", "jxl",
                              # other formats Pillow decodes (matching also tries any member
                              # that is not plain text, whatever its name)
                              "tga", "icb", "vda", "vst", "pcx", "dcx", "psd", "sgi", "rgb",
                              "rgba", "bw", "ras", "dds", "icns", "cur", "xbm", "xpm", "apng",
                              "mpo", "msp", "pcd", "pxr", "qoi", "blp", "fli", "flc", "ftc",
                              "ftu", "gbr", "im", "iim", "dib", "pfm", "j2k", "j2c", "jpc",
                              "jpf", "jpx"})
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


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


@dataclass
class Sample:
    """One sample's members, in tar order."""

    key: str
    members: list[Member] = field(default_factory=list)
    #: True when the key was already seen earlier in the tar.
    repeated: bool = False

    @property
    def images(self) -> list[Member]:
        return [m for m in self.members if is_image_name(m.name)]


def is_image_name(name: str) -> bool:
    """Whether any dotted part of a member's extension names an image type: ``k.jpg``,
    ``k.JPG``, ``k.0.jpg`` (webdataset decodes by the last part)."""
    return any(part in IMAGE_EXTENSIONS for part in split_member(name)[1].split("."))


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
                end = (int(members.offset_data[-1]) + -(-int(members.size[-1]) // _BLOCK)
                       * _BLOCK) if len(members) else 0
                trailing = _first_nonzero(blocks, end)
            finally:
                del blocks, grid
    except (OSError, ValueError) as exc:
        raise InvalidDatasetError(f"{path}: not a readable tar ({brief(exc)})") from exc
    if trailing is not None:
        # tar --ignore-zeros and other lenient readers would find members hidden there, which
        # scrub never matched
        raise InvalidDatasetError(
            f"{path}: bytes after the end-of-archive blocks (at byte {trailing}); some tar "
            "readers read on and would find members scrub did not check",
            hint="repack the tar so that it ends after its last member")
    _check_names(members, path)
    return members


def _first_nonzero(blocks: np.ndarray, start: int) -> int | None:
    """The first non-zero byte at or after ``start``, or None."""
    tail = blocks[start:]
    if not tail.any():
        return None
    return start + int(np.argmax(tail != 0))


def _check_names(members: TarMembers, path: Path) -> None:
    """Refuse member names that leave the archive or are not UTF-8 (readers would each decode
    them their own way), and data members without a name."""
    try:
        "\0".join(members.names).encode("utf-8")
    except UnicodeEncodeError:
        first = next(i for i, n in enumerate(members.names) if not _utf8(n))
        raise InvalidDatasetError(
            f"{path}: member {first} (at byte {int(members.offset[first])}) has a name that "
            "is not UTF-8", hint="repack the tar with UTF-8 member names") from None
    names = pl.Series(members.names, dtype=pl.String)
    bad = leaves_archive(names).to_numpy()
    empty = (normal_paths(names) == "").to_numpy() & members.is_data()
    slashed = names.str.ends_with("/").to_numpy() & members.is_data() & (members.size > 0)
    for mask, problem in ((bad, "has a name that leaves the archive (absolute, or with '..')"),
                          (empty, "has an empty name"),
                          (slashed, "is a file named like a folder (trailing '/') that carries "
                                    "data; tar readers disagree on it")):
        if mask.any():
            first = int(np.argmax(mask))
            raise InvalidDatasetError(
                f"{path}: member {first} (at byte {int(members.offset[first])}) {problem}",
                hint="repack the tar with plain relative member names (img2dataset's "
                     "{key}.jpg)")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if (np.isin(fields.kinds, _NO_DATA_KINDS) & (sizes > 0)).any():
        return None  # a link or folder declaring data: the walk refuses it by name
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
_SPECIAL_KINDS = np.frombuffer(b"LxgKSVMX", dtype=np.uint8)
_NO_DATA_KINDS = np.frombuffer(b"".join(_NO_DATA_TYPES), dtype=np.uint8)
#: GNU sparse, volume label and multi-volume continuation members: readers reassemble their
#: data differently, so they cannot be matched reliably.
_REFUSED_TYPES = (b"S", b"V", b"M")
#: Headers that describe the member after them: GNU long names and link names, pax extended
#: headers (``X``: Solaris' spelling, read as pax by tarfile) and pax global headers.
_PRE_HEADERS = (b"L", b"K", b"x", b"X", b"g")
#: pax records that change where data lies or which member a later one is: refused in global
#: headers (readers disagree on applying them); ``size`` and ``path`` are honoured per member.
_LAYOUT_RECORDS = (b"path", b"size", b"linkpath")


def _scan(view: mmap.mmap, size: int, path: Path) -> tuple[TarMembers, list[int]]:
    members: list[Member] = []
    headers: list[int] = []
    position = 0
    start: int | None = None
    long_name: str | None = None
    pax_size: int | None = None
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
        if pax_size is not None and kind not in _PRE_HEADERS:
            length = pax_size  # a pax size record overrides the header's, as readers apply it
        data_at = position + _BLOCK
        padded = -(-length // _BLOCK) * _BLOCK
        if kind in _REFUSED_TYPES:
            raise InvalidDatasetError(
                f"{path}: sparse or multi-volume member at byte {position} (type "
                f"{kind.decode('latin-1')!r}); readers reassemble its data differently",
                hint="repack the tar with plain files")
        if header[257:262] != b"ustar" and header[345] != 0:
            raise InvalidDatasetError(  # tarfile prefixes the name with it, GNU tar does not
                f"{path}: pre-ustar header at byte {position} with a name prefix; tar "
                "readers disagree on the member's name", hint="repack the tar with plain files")
        if kind in _NO_DATA_TYPES and length > 0:
            raise InvalidDatasetError(
                f"{path}: member at byte {position} is a link, folder or device that declares "
                f"{length} bytes of data; tar readers disagree on where the next member starts",
                hint="repack the tar with plain files")
        if data_at + length > size:
            raise InvalidDatasetError(f"{path}: truncated tar (member data runs past the end)",
                                      hint="download the shard again")
        if start is None:
            start = position
        if kind in _PRE_HEADERS:  # a long name or pax header for the next member
            extra = view[data_at: data_at + length]
            if kind == b"L":
                long_name = extra.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind != b"K":  # a link's long target names no member: nothing to read
                records = _pax_records(extra)
                if any(k.startswith(b"GNU.sparse") for k in records) or (
                        kind == b"g" and any(k in records for k in _LAYOUT_RECORDS)):
                    raise InvalidDatasetError(
                        f"{path}: pax header at byte {position} describes a sparse member or "
                        "sets paths or sizes for every member; readers disagree on it",
                        hint="repack the tar with plain files")
                if kind != b"g":
                    if b"path" in records:
                        long_name = records[b"path"].decode("utf-8", "surrogateescape")
                    if b"size" in records:
                        try:
                            pax_size = int(records[b"size"])
                            if pax_size < 0:
                                raise ValueError("negative size")
                        except ValueError:
                            raise InvalidDatasetError(
                                f"{path}: corrupt tar (bad pax size at byte {position})"
                            ) from None
            position = data_at + padded
            continue
        name = long_name or _ustar_name(header)
        if kind == b"5":
            name = name.rstrip("/")
        members.append(Member(name, start, data_at, length, kind))
        position = data_at + padded
        start, long_name, pax_size = None, None, None
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


def _pax_records(records: bytes) -> dict[bytes, bytes]:
    """The ``key=value`` records of a pax header (later ones win, as readers apply them)."""
    found: dict[bytes, bytes] = {}
    while records:
        length_text, _, rest = records.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            return found
        if length <= len(length_text):
            return found
        record = records[len(length_text) + 1: length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        found[key] = value
        records = records[length:]
    return found


def group_samples(members: TarMembers) -> list[Sample]:
    """Consecutive data members with one key form a sample; folders and links are not."""
    samples: list[Sample] = []
    seen: set[str] = set()
    files = members.is_data()
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


#: A file name with an image type among the dotted parts of its extension (see is_image_name).
_IMAGE_NAME = r"(?i)\.(?:" + "|".join(sorted(IMAGE_EXTENSIONS)) + r")(?:\.|$)"
#: Leading bytes of image formats, each a set of (offset, bytes) that must all be there: a member
#: holding an image is matched whatever its name says (``k.bin``, ``k.txt``, no extension).
_SIGNATURES: tuple[tuple[tuple[int, bytes], ...], ...] = (
    ((0, b"\xff\xd8\xff"),),  # JPEG
    ((0, b"\x89PNG\r\n\x1a\n"),),
    ((0, b"GIF87a"),), ((0, b"GIF89a"),),
    ((0, b"RIFF"), (8, b"WEBP")),
    ((0, b"II*\x00"),), ((0, b"MM\x00*"),),  # TIFF
    *(((4, b"ftyp" + brand),) for brand in (b"avif", b"avis", b"heic", b"heix", b"heim",
                                             b"heis", b"hevc", b"hevx", b"mif1", b"msf1")),
    ((0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),), ((0, b"\xff\x4f\xff\x51"),),  # JPEG 2000
    ((0, b"\xff\x0a"),), ((0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),),  # JPEG XL
    ((0, b"qoif"),),
)
_SNIFF = 16


def image_members(path: Path, members: TarMembers) -> np.ndarray:
    """Indices of the data members that hold an image: named as one (:func:`is_image_name`), or
    starting with an image format's signature (JPEG, PNG, GIF, WebP, TIFF, BMP, ISO media, JPEG
    2000 / XL, QOI). The first bytes of every member are read in one gather."""
    data = members.is_data()
    named = members.paths().str.split("/").list.last().str.contains(_IMAGE_NAME).to_numpy()
    rows = np.flatnonzero(data & ~named)
    sniffed = np.zeros(len(members), dtype=bool)
    if len(rows):
        try:
            with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                       access=mmap.ACCESS_READ) as view:
                blocks = np.frombuffer(view, dtype=np.uint8)
                try:
                    at = members.offset_data[rows][:, None] + np.arange(_SNIFF)
                    inside = np.arange(_SNIFF) < members.size[rows][:, None]
                    head = np.where(inside, blocks[np.minimum(at, len(blocks) - 1)], 0)
                finally:
                    del blocks
        except (OSError, ValueError) as exc:
            raise InvalidDatasetError(f"{path}: cannot read ({brief(exc)})") from exc
        found = np.zeros(len(rows), dtype=bool)
        for parts in _SIGNATURES:
            every = np.ones(len(rows), dtype=bool)
            for offset, signature in parts:
                expected = np.frombuffer(signature, dtype=np.uint8)
                every &= (head[:, offset: offset + len(expected)] == expected).all(axis=1)
            found |= every
        # BMP: "BM" then the file size, little-endian, as the member's size
        bmp_size = head[:, 2:6].astype(np.int64) @ (256 ** np.arange(4, dtype=np.int64))
        found |= (head[:, 0] == ord("B")) & (head[:, 1] == ord("M")) & (
            bmp_size == members.size[rows])
        sniffed[rows] = found
    return np.flatnonzero(data & (named | sniffed))


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
    """Write ``source`` minus the members whose key is in ``drop`` (normalised keys, see
    :meth:`TarMembers.keys`; links included, folders kept) to ``target`` (fsynced); return the
    number of members removed. Kept members are copied byte for byte, in order: each run of
    adjacent kept members is one ``sendfile`` call."""
    removed = (members.kind != ord("5")) & members.keys().is_in(
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
