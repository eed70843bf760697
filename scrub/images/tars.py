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
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def read_members(path: Path) -> list[Member]:
    """Every member of a tar, from its headers only (no data is read), or
    :class:`InvalidDatasetError` naming the tar when it is truncated or corrupt.

    Reads ustar, GNU (long names) and pax (``path`` records) headers from a memory map, then
    checks every header's checksum at once with numpy: many times faster than :mod:`tarfile`
    on tars of many small members.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            raise InvalidDatasetError(f"{path}: empty file, not a tar")
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                   access=mmap.ACCESS_READ) as view:
            members, headers = _scan(view, size, path)
            blocks = np.frombuffer(view, dtype=np.uint8)
            if headers:
                at = np.asarray(headers, dtype=np.int64)
                rows = blocks[at[:, None] + np.arange(_BLOCK)].astype(np.int64)
                rows[:, 148:156] = 32
                computed = rows.sum(axis=1)
                stored = [_checksum_field(view[h + 148: h + 156]) for h in headers]
                bad = np.flatnonzero(computed != np.asarray(stored, dtype=np.int64))
                if len(bad):
                    raise InvalidDatasetError(f"{path}: corrupt tar (bad header checksum at "
                                              f"byte {headers[int(bad[0])]})")
            del blocks
    except (OSError, ValueError) as exc:
        raise InvalidDatasetError(f"{path}: not a readable tar ({brief(exc)})") from exc
    return members


def _scan(view: mmap.mmap, size: int, path: Path) -> tuple[list[Member], list[int]]:
    members: list[Member] = []
    headers: list[int] = []
    position = 0
    start: int | None = None
    long_name: str | None = None
    while True:
        if position + _BLOCK > size:
            if position >= size and members:
                break  # no end-of-archive blocks: tolerated, as tar does
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
    return members, headers


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


def group_samples(members: list[Member]) -> list[Sample]:
    """Consecutive file members with one key form a sample; directories are not samples."""
    samples: list[Sample] = []
    seen: set[str] = set()
    for member in members:
        if not member.isfile():
            continue
        key, _ = split_member(member.name)
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


def member_span(member: Member) -> tuple[int, int]:
    """Byte range of a member in its tar: its headers (long-name and pax ones too) and padded
    data."""
    size = member.size
    padded = -(-size // _BLOCK) * _BLOCK
    return member.offset, member.offset_data + padded


def rewrite_tar(source: Path, target: Path, members: list[Member],
                drop: Collection[str]) -> int:
    """Write ``source`` minus the members whose key is in ``drop`` to ``target`` (fsynced);
    return the number of members removed. Kept members are copied byte for byte, in order."""
    spans: list[tuple[int, int]] = []
    removed = 0
    for member in members:
        if member.isfile() and split_member(member.name)[0] in drop:
            removed += 1
            continue
        start, stop = member_span(member)
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], stop)  # adjacent: one copy
        else:
            spans.append((start, stop))
    with open(source, "rb") as src, open(target, "wb") as dst:
        written = 0
        for start, stop in spans:
            written += _copy_range(src, dst, start, stop - start)
        end = b"\0" * (2 * _BLOCK)
        written += len(end)
        dst.write(end + b"\0" * (-written % _RECORD))
        dst.flush()
        os.fsync(dst.fileno())
    return removed


def _copy_range(src, dst, offset: int, length: int) -> int:  # type: ignore[no-untyped-def]
    dst.flush()
    done = 0
    while done < length:
        sent = os.sendfile(dst.fileno(), src.fileno(), offset + done, length - done)
        if sent == 0:
            raise InvalidDatasetError(f"{src.name}: truncated tar")
        done += sent
    return done
