"""Reading tar headers: a vectorised chain over plain ustar tars, and a header-by-header walk
for long-name, pax and pre-ustar headers that refuses what readers would read differently."""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scrub.errors import InvalidDatasetError
from scrub.images._tar_members import _BLOCK, _NO_DATA_KINDS, _NO_DATA_TYPES, Member, TarMembers


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
    later: np.ndarray = np.cumsum(digit[:, ::-1], axis=1)[:, ::-1] - digit
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
    """The header-by-header walk: every member, and the position of every header read."""
    members: list[Member] = []
    headers: list[int] = []
    position = 0
    start: int | None = None
    long_name: str | None = None
    pax_size: int | None = None
    while True:
        header = _header_at(view, size, position, path, bool(members))
        if header == _ZERO_BLOCK:
            break
        headers.append(position)
        kind = header[156:157]
        length = _octal(header[124:136], path, position)
        if pax_size is not None and kind not in _PRE_HEADERS:
            length = pax_size  # a pax size record overrides the header's, as readers apply it
        data_at = position + _BLOCK
        padded = -(-length // _BLOCK) * _BLOCK
        _check_header(header, kind, length, position, size, path)
        if start is None:
            start = position
        if kind in _PRE_HEADERS:  # a long name or pax header for the next member
            long_name, pax_size = _pre_header(view[data_at: data_at + length], kind, position,
                                              path, long_name, pax_size)
            position = data_at + padded
            continue
        name = long_name or _ustar_name(header)
        if kind == b"5":
            name = name.rstrip("/")
        members.append(Member(name, start, data_at, length, kind))
        position = data_at + padded
        start, long_name, pax_size = None, None, None
    return TarMembers.of(members), headers


def _header_at(view: mmap.mmap, size: int, position: int, path: Path, after_member: bool) -> bytes:
    """The header block at ``position``; InvalidDatasetError when the tar ends before it."""
    if position + _BLOCK > size:
        if position >= size and after_member:
            # tar and Python's tarfile accept this, but every writer of webdatasets ends a
            # tar with zero blocks: a file cut just after a member (a copy stopped on a page
            # boundary) would otherwise pass for a complete, shorter shard
            raise InvalidDatasetError(
                f"{path}: truncated tar (no end-of-archive blocks after the last member, "
                f"at byte {position})", hint="download the shard again")
        raise InvalidDatasetError(f"{path}: truncated tar (a header is cut short)",
                                  hint="download the shard again")
    return view[position: position + _BLOCK]


def _check_header(header: bytes, kind: bytes, length: int, position: int, size: int,
                  path: Path) -> None:
    """Refuse a header tar readers would read differently, or whose data runs past the end."""
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
    if position + _BLOCK + length > size:
        raise InvalidDatasetError(f"{path}: truncated tar (member data runs past the end)",
                                  hint="download the shard again")


def _pre_header(extra: bytes, kind: bytes, position: int, path: Path, long_name: str | None,
                pax_size: int | None) -> tuple[str | None, int | None]:
    """(long name, pax size) for the next member after a GNU long-name or pax header whose
    data is ``extra``; a sparse or global layout pax header is refused."""
    if kind == b"L":
        return extra.rstrip(b"\0").decode("utf-8", "surrogateescape"), pax_size
    if kind == b"K":  # a link's long target names no member: nothing to read
        return long_name, pax_size
    records = _pax_records(extra)
    if any(k.startswith(b"GNU.sparse") for k in records) or (
            kind == b"g" and any(k in records for k in _LAYOUT_RECORDS)):
        raise InvalidDatasetError(
            f"{path}: pax header at byte {position} describes a sparse member or "
            "sets paths or sizes for every member; readers disagree on it",
            hint="repack the tar with plain files")
    if kind == b"g":
        return long_name, pax_size
    if b"path" in records:
        long_name = records[b"path"].decode("utf-8", "surrogateescape")
    if b"size" in records:
        try:
            pax_size = int(records[b"size"])
            if pax_size < 0:
                raise ValueError("negative size")
        except ValueError:
            raise InvalidDatasetError(
                f"{path}: corrupt tar (bad pax size at byte {position})") from None
    return long_name, pax_size


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
