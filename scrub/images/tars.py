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
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from scrub.errors import InvalidDatasetError, brief
from scrub.images._tar_headers import _chain, _check_sums, _HeaderFields, _members_of, _scan
from scrub.images._tar_members import (
    _BLOCK,
    Member,
    TarMembers,
    leaves_archive,
    normal_path,
    normal_paths,
    split_member,
)

__all__ = ["IMAGE_EXTENSIONS", "Member", "Sample", "TarMembers", "group_samples", "image_members",
           "is_image_name", "iter_image_bytes", "leaves_archive", "normal_path", "normal_paths",
           "read_members", "rewrite_tar", "split_member"]

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
_RECORD = tarfile.RECORDSIZE



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



def read_members(path: Path) -> TarMembers:
    """Every member of a tar, from its headers only (no data is read), or
    :class:`InvalidDatasetError` naming the tar when it is truncated or corrupt.

    ustar tars (what Python's tarfile and webdataset write) are read with numpy: every block
    carrying the ustar magic is a candidate header, each candidate's size gives the block of the
    next one, and the chain from block 0 through those links is the member list; then every
    header's checksum is checked at once. Tars with long-name, pax or pre-ustar headers take a
    header-by-header walk that reads them all (docs/design/tars.md).
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
        for start, stop in zip(span_starts, span_stops, strict=True):
            written += _copy_range(src, dst, start, stop - start)
        end = b"\0" * (2 * _BLOCK)
        written += len(end)
        dst.write(end + b"\0" * (-written % _RECORD))
        dst.flush()
        os.fsync(dst.fileno())
    return int(removed.sum())


def _copy_range(src: BinaryIO, dst: BinaryIO, offset: int, length: int) -> int:
    dst.flush()
    done = 0
    while done < length:
        sent = os.sendfile(dst.fileno(), src.fileno(), offset + done, length - done)
        if sent == 0:
            raise InvalidDatasetError(f"{src.name}: truncated tar")
        done += sent
    return done
