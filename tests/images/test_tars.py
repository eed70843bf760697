"""The tar header reader: its numpy path and its header-by-header walk agree with tarfile,
including on tars built to mislead the numpy path, and both reject corrupt or cut tars."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from scrub.errors import InvalidDatasetError
from scrub.images import tars
from scrub.images.synthetic import generate_webdataset


def tarfile_view(path: Path) -> list[tuple[str, int, int, int, bool]]:
    with tarfile.open(path) as handle:
        return [(m.name, m.offset, m.offset_data, m.size if m.isfile() else 0, m.isfile())
                for m in handle.getmembers()]


def ours(path: Path) -> list[tuple[str, int, int, int, bool]]:
    return [(m.name, m.offset, m.offset_data, m.size, m.isfile())
            for m in tars.read_members(path)]


def write_tar(path: Path, files: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT
              ) -> Path:
    with tarfile.open(path, "w", format=fmt) as out:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


def fake_header_block() -> bytes:
    """512 bytes that look like a ustar header (magic, valid size and checksum)."""
    info = tarfile.TarInfo("decoy.jpg")
    info.size = 10
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def test_a_generated_webdataset_reads_as_tarfile_reads_it(tmp_path: Path) -> None:
    folder = generate_webdataset(tmp_path / "wds", shards=1, samples=50, seed=3)
    tar = folder / "00000.tar"
    assert tars._chain(tars_grid(tar)) is not None  # the numpy path is the one exercised
    assert ours(tar) == tarfile_view(tar)
    keys = tars.read_members(tar).keys().to_list()
    assert keys == [tars.split_member(m[0])[0] for m in tarfile_view(tar)]


def tars_grid(path: Path):  # type: ignore[no-untyped-def]
    import numpy as np

    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    return data[: len(data) // 512 * 512].reshape(-1, 512)


def test_header_lookalikes_inside_data_are_not_members(tmp_path: Path) -> None:
    decoy = fake_header_block()
    files = [("a.jpg", decoy * 3), ("a.txt", b"x" * 700), ("b.bin", b"\0" * 100 + decoy),
             ("c.json", decoy[:300])]
    tar = write_tar(tmp_path / "t.tar", files)
    assert ours(tar) == tarfile_view(tar)


def test_ustar_prefixes_nul_cut_names_and_directories_read_as_tarfile_reads_them(
        tmp_path: Path) -> None:
    tar = tmp_path / "t.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as out:
        folder = tarfile.TarInfo("dir/")
        folder.type = tarfile.DIRTYPE
        out.addfile(folder)
        long_name = "p" * 90 + "/" + "q" * 60 + "/00001.jpg"  # needs the prefix field
        for name in (long_name, "dir/00002.jpg", "ünï/00003.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            out.addfile(info, io.BytesIO(b"abc"))
    assert ours(tar) == tarfile_view(tar)
    assert tars.read_members(tar).keys().to_list()[1] == "p" * 90 + "/" + "q" * 60 + "/00001"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_name_tars_take_the_walk_and_agree(tmp_path: Path, fmt: int) -> None:
    tar = write_tar(tmp_path / "t.tar", [("d" * 150 + "/k.jpg", b"1" * 600), ("k.txt", b"2")],
                    fmt)
    grid = tars_grid(tar)
    assert tars._chain(grid) is None
    assert ours(tar) == tarfile_view(tar)


def test_a_base_256_size_field_takes_the_walk(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "t.tar", [("a.jpg", b"1" * 10), ("b.jpg", b"2" * 20)])
    data = bytearray(tar.read_bytes())
    header = data[:512]
    header[124:136] = b"\x80" + (10).to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    data[:512] = header
    tar.write_bytes(bytes(data))
    assert tars._chain(tars_grid(tar)) is None
    assert ours(tar) == tarfile_view(tar)


def test_a_corrupt_header_is_named_with_its_byte_offset(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "t.tar", [("a.jpg", b"1" * 10), ("b.jpg", b"2" * 20)])
    data = bytearray(tar.read_bytes())
    data[1024] ^= 0x01  # the second header's name, checksum left as it was
    tar.write_bytes(bytes(data))
    with pytest.raises(InvalidDatasetError, match=r"t\.tar: corrupt tar .*byte 1024"):
        tars.read_members(tar)


@pytest.mark.parametrize("cut", [100, 512 + 5, 1024, 1536 + 200, 2560])
def test_a_cut_tar_is_named_as_truncated(tmp_path: Path, cut: int) -> None:
    # 1024 and 2560: just after a member, so only the missing end-of-archive blocks tell
    tar = write_tar(tmp_path / "t.tar", [("a.jpg", b"1" * 10), ("b.jpg", b"2" * 600)])
    tar.write_bytes(tar.read_bytes()[:cut])
    with pytest.raises(InvalidDatasetError, match=r"t\.tar: truncated tar"):
        tars.read_members(tar)


def test_rewrite_keeps_every_other_member_byte_for_byte(tmp_path: Path) -> None:
    folder = generate_webdataset(tmp_path / "wds", shards=1, samples=40, seed=9)
    tar = folder / "00000.tar"
    members = tars.read_members(tar)
    keys = sorted(set(members.keys().to_list()))
    drop = {keys[0], keys[17], keys[-1]}
    removed = tars.rewrite_tar(tar, tmp_path / "r.tar", members, drop)
    before = tarfile_view(tar)
    assert removed == sum(tars.split_member(m[0])[0] in drop for m in before)
    data, out = tar.read_bytes(), (tmp_path / "r.tar").read_bytes()
    kept = b"".join(data[m.offset: m.offset_data + -(-m.size // 512) * 512]
                    for m in members if tars.split_member(m.name)[0] not in drop)
    assert out[: len(kept)] == kept
    assert set(out[len(kept):]) <= {0} and len(out) % tarfile.RECORDSIZE == 0
