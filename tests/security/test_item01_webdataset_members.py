"""Issue 19, item 1: every image member of a webdataset tar is hashed and matched on its own,
whatever its name; a sample is dropped whole when any member matches; names are normalised as
webdataset readers group them; names that leave the archive, and layouts tar readers disagree
on, are refused (exit 2), never kept silently."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from scrub.images.synthetic import jpeg_bytes, picture
from scrub.layout import companion
from tests.helpers import expect_exit, expect_ok, run_cli

KEYS = [f"{i:06d}" for i in range(6)]


def images(count: int = 8, seed: int = 11) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [jpeg_bytes(picture(rng, 32)) for _ in range(count)]


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(np.random.default_rng(seed), 32).save(buffer, "PNG")
    return buffer.getvalue()


def write_shard(folder: Path, entries: list[tuple[str, bytes] | tarfile.TarInfo],
                keys: list[str] = KEYS, fmt: int = tarfile.GNU_FORMAT) -> Path:
    """``folder/00000.tar`` with these members (name + data, or a ready TarInfo without data)
    and a sidecar ``00000.parquet`` with one row per key."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "00000.tar", "w", format=fmt) as out:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                out.addfile(entry)
                continue
            name, data = entry
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            out.addfile(info, io.BytesIO(data))
    pl.DataFrame({"key": keys,
                  "url": [f"https://img.example.com/{k}.jpg" for k in keys],
                  "caption": [f"photo {k}" for k in keys]}).write_parquet(folder / "00000.parquet")
    return folder


def sample(key: str, image: bytes, name: str | None = None) -> list[tuple[str, bytes]]:
    name = name or f"{key}.jpg"
    stem = name.rsplit(".", 1)[0]
    return [(name, image), (f"{stem}.txt", f"photo {key}".encode()),
            (f"{stem}.json", json.dumps({"key": key}).encode())]


def md5_list(folder: Path, *data: bytes) -> Path:
    path = folder / "md5.txt"
    path.write_text("".join(hashlib.md5(d).hexdigest() + "\n" for d in data))
    return path


def apply(dataset: Path, out: Path, *lists: Path) -> object:
    args = ["apply", str(dataset), str(out), "--workers", "1", "--quiet"]
    for path in lists:
        args += ["--hashlist", str(path)]
    return run_cli(*args)


def tar_digests(tar: Path) -> list[str]:
    """The md5 of every member's data, as any tar reader gets it."""
    with tarfile.open(tar) as handle:
        return [hashlib.md5(handle.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                for m in handle.getmembers() if m.isfile()]


def tar_names(tar: Path) -> list[str]:
    with tarfile.open(tar) as handle:
        return [m.name for m in handle.getmembers()]


def sidecar_keys(out: Path) -> list[str]:
    return pl.read_parquet(out / "00000.parquet")["key"].to_list()


def dotted_folder() -> tarfile.TarInfo:
    info = tarfile.TarInfo("./")
    info.type = tarfile.DIRTYPE
    return info


@pytest.mark.parametrize("layout", ["dot_slash", "subfolder", "deep_dot", "double_slash"])
def test_listed_image_leaves_the_tar_whatever_its_folder(tmp_path: Path, layout: str) -> None:
    pics = images()
    prefix = {"dot_slash": "./", "subfolder": "imgs/", "deep_dot": "./imgs/./",
              "double_slash": "imgs//"}[layout]
    entries: list = [dotted_folder()] if layout == "dot_slash" else []
    for i, key in enumerate(KEYS):
        entries += sample(key, pics[i], f"{prefix}{key}.jpg")
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[3]))
    expect_ok(result)
    digests = tar_digests(out / "00000.tar")
    assert hashlib.md5(pics[3]).hexdigest() not in digests
    assert not any("000003" in n for n in tar_names(out / "00000.tar"))  # the sample, whole
    assert sidecar_keys(out) == [k for k in KEYS if k != "000003"]
    assert all(hashlib.md5(pics[i]).hexdigest() in digests for i in (0, 1, 2, 4, 5))


def test_orphan_image_without_a_sidecar_row_is_matched(tmp_path: Path) -> None:
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries[6:6] = sample("999999", pics[7])  # in the tar, not in the sidecar
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[7]))
    expect_ok(result)
    assert hashlib.md5(pics[7]).hexdigest() not in tar_digests(out / "00000.tar")
    assert not any(n.startswith("999999") for n in tar_names(out / "00000.tar"))
    assert sidecar_keys(out) == KEYS
    report = json.loads((companion(out) / "apply-report.json").read_text())
    assert sum(report["removed_by_reason"].values()) >= 1  # counted, not silent


def test_repeated_key_second_copy_is_matched_and_the_sample_dropped_whole(
        tmp_path: Path) -> None:
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries += [("000001.jpg", pics[6])]  # the key again, later, with a listed image
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[6]))
    expect_ok(result)
    digests = tar_digests(out / "00000.tar")
    assert hashlib.md5(pics[6]).hexdigest() not in digests
    assert hashlib.md5(pics[1]).hexdigest() not in digests  # the first copy: same sample
    assert not any(n.startswith("000001") for n in tar_names(out / "00000.tar"))
    assert "000001" not in sidecar_keys(out)


@pytest.mark.parametrize("second", ["000001.png", "000001.PNG", "000001.0.png", "000001.bin",
                                    "000001.txt.x", "000001"])
def test_a_second_image_of_a_sample_is_matched_whatever_its_extension(
        tmp_path: Path, second: str) -> None:
    pics = images()
    listed = png_bytes(5)
    entries = []
    for i, key in enumerate(KEYS):
        entries += sample(key, pics[i])
        if key == "000001":
            entries.append((second, listed))
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, listed))
    expect_ok(result)
    digests = tar_digests(out / "00000.tar")
    assert hashlib.md5(listed).hexdigest() not in digests
    assert hashlib.md5(pics[1]).hexdigest() not in digests  # dropped whole
    assert "000001" not in sidecar_keys(out)
    assert hashlib.md5(pics[2]).hexdigest() in digests


def test_a_second_image_matched_by_pdq(tmp_path: Path) -> None:
    pics = images()
    listed = png_bytes(6)
    from scrub.images.hashing import hash_image

    entries = []
    for i, key in enumerate(KEYS):
        entries += sample(key, pics[i], f"./shard/{key}.jpg")
        if key == "000004":
            entries.append((f"./shard/{key}.png", listed))
    dataset = write_shard(tmp_path / "wds", entries)
    pdq = tmp_path / "pdq.txt"
    pdq.write_text(hash_image(listed, ["pdq"])["pdq"] + "\n")  # type: ignore[operator]
    out = tmp_path / "out"
    result = run_cli("apply", str(dataset), str(out), "--hashlist", str(pdq),
                     "--type", "pdq", "--workers", "1", "--quiet")
    expect_ok(result)
    assert hashlib.md5(listed).hexdigest() not in tar_digests(out / "00000.tar")
    assert "000004" not in sidecar_keys(out)


@pytest.mark.parametrize("layout", ["dot_slash", "subfolder"])
def test_a_row_dropped_by_url_takes_its_members_whatever_their_folder(
        tmp_path: Path, layout: str) -> None:
    pics = images()
    prefix = {"dot_slash": "./", "subfolder": "imgs/"}[layout]
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i], f"{prefix}{k}.jpg")]
    dataset = write_shard(tmp_path / "wds", entries)
    urls = tmp_path / "urls.csv"
    urls.write_text("type,value\nurl,https://img.example.com/000002.jpg\n")
    out = tmp_path / "out"
    result = apply(dataset, out, urls)
    expect_ok(result)
    assert hashlib.md5(pics[2]).hexdigest() not in tar_digests(out / "00000.tar")
    assert not any("000002" in n for n in tar_names(out / "00000.tar"))
    assert "000002" not in sidecar_keys(out)


@pytest.mark.parametrize("name", ["../../000003.jpg", "../000003.jpg", "imgs/../../000003.jpg",
                                  "/000003.jpg", "/tmp/000003.jpg", "..\\..\\000003.jpg"])
def test_names_that_leave_the_archive_are_refused(tmp_path: Path, name: str) -> None:
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i]) if k != "000003"]
    entries.append((name, pics[3]))
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[0]))
    expect_exit(result, 2)
    assert "00000.tar" in result.output and "leaves the archive" in result.output
    assert not (out / "00000.tar").exists()


def test_a_pax_path_that_leaves_the_archive_is_refused(tmp_path: Path) -> None:
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i]) if k != "000003"]
    entries.append(("x" * 120 + "/../../../000003.jpg", pics[3]))  # long: a pax path record
    dataset = write_shard(tmp_path / "wds", entries, fmt=tarfile.PAX_FORMAT)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[0]))
    expect_exit(result, 2)
    assert "leaves the archive" in result.output


def test_members_hidden_after_the_end_of_archive_are_refused(tmp_path: Path) -> None:
    pics = images()
    dataset = write_shard(tmp_path / "wds",
                          [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])])
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w", format=tarfile.GNU_FORMAT) as extra:
        info = tarfile.TarInfo("000003.jpg")
        info.size = len(pics[7])
        extra.addfile(info, io.BytesIO(pics[7]))
    tar = dataset / "00000.tar"
    tar.write_bytes(tar.read_bytes() + hidden.getvalue())  # `tar --ignore-zeros` reads it
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[7]))
    expect_exit(result, 2)
    assert "end-of-archive" in result.output
    assert not (out / "00000.tar").exists()


def test_a_link_that_declares_data_is_refused(tmp_path: Path) -> None:
    # tarfile (webdataset) reads the next header where the declared data starts, an image
    # hidden there would never have been matched
    pics = images()
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w", format=tarfile.USTAR_FORMAT) as extra:
        info = tarfile.TarInfo("000003.jpg")
        info.size = len(pics[7])
        extra.addfile(info, io.BytesIO(pics[7]))
    body = hidden.getvalue()[: 512 + -(-len(pics[7]) // 512) * 512]
    link = tarfile.TarInfo("000009.jpg")
    link.type = tarfile.SYMTYPE
    link.linkname = "000000.jpg"
    dataset = write_shard(tmp_path / "wds",
                          [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])],
                          fmt=tarfile.USTAR_FORMAT)
    tar = dataset / "00000.tar"
    data = tar.read_bytes()
    header = bytearray(link.tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = f"{len(body):011o}\0".encode()
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    end = data.rfind(b"000005.json")
    end = end + 512 + 512  # after that member's header and its one data block
    tar.write_bytes(data[:end] + bytes(header) + body + bytes(1024))
    with tarfile.open(tar) as handle:  # what a tarfile reader sees: the hidden image
        assert "000003.jpg" in handle.getnames()
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[7]))
    expect_exit(result, 2)
    assert "declares" in result.output
    assert not (out / "00000.tar").exists()


def test_scrub_hash_refuses_an_escaping_tar_by_name(tmp_path: Path) -> None:
    pics = images()
    dataset = write_shard(tmp_path / "wds", [("../000000.jpg", pics[0])])
    result = run_cli("hash", str(dataset / "00000.tar"), str(tmp_path / "h"),
                     "--types", "md5")
    expect_exit(result, 2)
    assert "00000.tar" in result.output and "leaves the archive" in result.output


@pytest.mark.parametrize("spelling", ["./imgs/{k}.jpg", "imgs//{k}.jpg", "./imgs/./{k}.jpg"])
def test_sidecar_keys_with_folders_find_their_members_however_spelled(
        tmp_path: Path, spelling: str) -> None:
    pics = images()
    keys = [f"imgs/{k}" for k in KEYS]  # the sidecar names each sample with its folder
    entries = [m for i, k in enumerate(KEYS)
               for m in sample(keys[i], pics[i], spelling.format(k=k))]
    dataset = write_shard(tmp_path / "wds", entries, keys=keys)
    urls = tmp_path / "urls.csv"
    urls.write_text("type,value\nurl,https://img.example.com/imgs/000004.jpg\n")
    out = tmp_path / "out"
    result = apply(dataset, out, urls)
    expect_ok(result)
    assert hashlib.md5(pics[4]).hexdigest() not in tar_digests(out / "00000.tar")
    assert not any("000004" in n for n in tar_names(out / "00000.tar"))
    assert hashlib.md5(pics[5]).hexdigest() in tar_digests(out / "00000.tar")


def test_scrub_hash_groups_members_by_their_normalised_key(tmp_path: Path) -> None:
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i], f"./{k}.jpg")]
    dataset = write_shard(tmp_path / "wds", [dotted_folder(), *entries])
    result = run_cli("hash", str(dataset / "00000.tar"), str(tmp_path / "h"),
                     "--types", "md5", "--quiet")
    expect_ok(result)
    rows = pl.read_parquet(tmp_path / "h" / "00000.parquet")
    assert rows["key"].to_list() == KEYS  # as the sidecar names them, not "./000000"


def test_a_member_name_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    pics = images()
    folder = tmp_path / "wds"
    write_shard(folder, [])
    with tarfile.open(folder / "00000.tar", "w", format=tarfile.USTAR_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as out:
        for name, data in [*sample("000000", pics[0]), ("\udcff\udcfe.jpg", pics[1])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    result = apply(folder, out, md5_list(tmp_path, pics[1]))
    expect_exit(result, 2)
    assert "00000.tar" in result.output and "not UTF-8" in result.output
    assert not (out / "00000.tar").exists()


def test_a_member_hidden_behind_a_pax_size_record_is_matched(tmp_path: Path) -> None:
    # A pax header says the next member holds 0 bytes while its ustar header says it holds
    # the next 1.5 KiB: tarfile and GNU tar follow the pax record and find the image there.
    pics = images()
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w", format=tarfile.USTAR_FORMAT) as extra:
        info = tarfile.TarInfo("000003.jpg")
        info.size = len(pics[7])
        extra.addfile(info, io.BytesIO(pics[7]))
    smuggled = hidden.getvalue()[: 512 + -(-len(pics[7]) // 512) * 512]
    record = b"9 size=0\n"
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = len(record)
    cover = tarfile.TarInfo("000001.txt")
    cover.size = len(smuggled)
    dataset = write_shard(tmp_path / "wds", [m for i, k in enumerate(KEYS) for m in
                                             sample(k, pics[i]) if not m[0].startswith("000001")],
                          fmt=tarfile.USTAR_FORMAT)
    tar = dataset / "00000.tar"
    data = tar.read_bytes()
    end = data.rfind(b"000005.json") + 1024  # after that member's header and data block
    tar.write_bytes(data[:end] + pax.tobuf(format=tarfile.USTAR_FORMAT)
                    + record.ljust(512, b"\0") + cover.tobuf(format=tarfile.USTAR_FORMAT)
                    + smuggled + bytes(1024))
    with tarfile.open(tar) as handle:
        assert "000003.jpg" in handle.getnames()[-1:]  # what readers see
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[7]))
    expect_ok(result)
    assert hashlib.md5(pics[7]).hexdigest() not in tar_digests(out / "00000.tar")
    assert "000003" not in sidecar_keys(out)


def patch_header(tar: Path, member: str, change: Callable[[bytearray], None]) -> None:
    """Rewrite the header of ``member`` in place with ``change``, checksum recomputed."""
    data = bytearray(tar.read_bytes())
    with tarfile.open(tar) as handle:
        at = handle.getmember(member).offset
    header = data[at: at + 512]
    change(header)
    header[148:156] = b" " * 8
    header[148:155] = f"{sum(header):06o}\0".encode()
    data[at: at + 512] = header
    tar.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", [b"S", b"V", b"M"])
def test_sparse_and_multi_volume_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    pics = images()
    dataset = write_shard(tmp_path / "wds",
                          [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])],
                          fmt=tarfile.USTAR_FORMAT)

    def retype(header: bytearray) -> None:
        header[156:157] = kind

    patch_header(dataset / "00000.tar", "000003.jpg", retype)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[0]))
    expect_exit(result, 2)
    assert "00000.tar" in result.output and "sparse or multi-volume" in result.output
    assert not (out / "00000.tar").exists()


def test_a_pre_ustar_name_prefix_is_refused(tmp_path: Path) -> None:
    # without the ustar magic, tarfile still joins the prefix field to the name (here making
    # it leave the archive) while GNU tar ignores it
    pics = images()
    dataset = write_shard(tmp_path / "wds",
                          [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])],
                          fmt=tarfile.USTAR_FORMAT)

    def v7_with_prefix(header: bytearray) -> None:
        header[257:265] = bytes(8)
        header[345:350] = b"../.."

    patch_header(dataset / "00000.tar", "000003.jpg", v7_with_prefix)
    with tarfile.open(dataset / "00000.tar") as handle:
        assert "../../000003.jpg" in handle.getnames()
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[0]))
    expect_exit(result, 2)
    assert "prefix" in result.output
    assert not (out / "00000.tar").exists()


def test_an_unknown_member_type_is_matched_as_a_file(tmp_path: Path) -> None:
    # GNU tar extracts a member of an unknown type as a regular file
    pics = images()
    dataset = write_shard(tmp_path / "wds",
                          [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])],
                          fmt=tarfile.USTAR_FORMAT)

    def retype(header: bytearray) -> None:
        header[156:157] = b"Z"

    patch_header(dataset / "00000.tar", "000003.jpg", retype)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[3]))
    expect_ok(result)
    data = (out / "00000.tar").read_bytes()
    assert pics[3] not in data
    assert "000003" not in sidecar_keys(out)


# Red-team follow-up: formats scrub's name and signature tables miss, gzip members, and sidecar
# keys that do not spell the member names (img2dataset's int64 keys, folder prefixes).

def encoded(fmt: str, seed: int = 3) -> bytes:
    buffer = io.BytesIO()
    picture(np.random.default_rng(seed), 32).save(buffer, fmt)
    return buffer.getvalue()


def report_of(out: Path) -> dict:
    return json.loads((companion(out) / "apply-report.json").read_text())


@pytest.mark.parametrize("name", ["000002.jpg.gz", "000002.gz", "000002.bin", "000002.txt.gz"])
def test_a_gzip_member_is_matched_on_the_image_inside(tmp_path: Path, name: str) -> None:
    # webdataset inflates ``.gz`` members before decoding them: the listed image is there
    import gzip

    pics = images()
    entries = []
    for i, key in enumerate(KEYS):
        entries += (sample(key, pics[i]) if key != "000002" else
                    [(name, gzip.compress(pics[2])), ("000002.txt", b"photo")])
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[2]))
    expect_ok(result)
    assert not any(n.startswith("000002") for n in tar_names(out / "00000.tar"))
    assert "000002" not in sidecar_keys(out)
    assert len(tar_names(out / "00000.tar")) == 3 * 5 + 0  # the other samples, whole


def test_a_nested_gzip_member_is_matched_by_pdq(tmp_path: Path) -> None:
    import gzip

    from scrub.images.hashing import hash_image

    pics = images()
    listed = encoded("PNG", 9)
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries.append(("000004.png.gz.gz", gzip.compress(gzip.compress(listed))))
    dataset = write_shard(tmp_path / "wds", entries)
    pdq = tmp_path / "pdq.txt"
    pdq.write_text(hash_image(listed, ["pdq"])["pdq"] + "\n")  # type: ignore[operator]
    out = tmp_path / "out"
    result = run_cli("apply", str(dataset), str(out), "--hashlist", str(pdq),
                     "--type", "pdq", "--workers", "1", "--quiet")
    expect_ok(result)
    assert not any(n.startswith("000004") for n in tar_names(out / "00000.tar"))
    assert "000004" not in sidecar_keys(out)


def test_a_gzip_member_past_the_size_limit_is_counted_not_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from scrub.images import hashing

    monkeypatch.setattr(hashing, "MAX_GUNZIP_BYTES", 1000)
    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries.append(("000009.jpg.gz", gzip.compress(pics[7] + bytes(5000))))
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[6]))
    expect_ok(result)
    assert report_of(out)["unmatchable"].get("md5 (tar member)", 0) >= 1


@pytest.mark.parametrize("fmt,name", [("TGA", "000003.tga"), ("PCX", "000003.pcx"),
                                      ("TGA", "000003.bin"), ("PCX", "000003")])
def test_formats_outside_the_signature_table_get_perceptual_hashes(
        tmp_path: Path, fmt: str, name: str) -> None:
    from scrub.images.hashing import hash_image

    pics = images()
    listed = encoded(fmt, 4)
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i]) if k != "000003"]
    entries += [(name, listed), ("000003.txt", b"photo 000003")]
    dataset = write_shard(tmp_path / "wds", entries)
    pdq = tmp_path / "pdq.txt"
    pdq.write_text(hash_image(listed, ["pdq"])["pdq"] + "\n")  # type: ignore[operator]
    out = tmp_path / "out"
    result = run_cli("apply", str(dataset), str(out), "--hashlist", str(pdq),
                     "--type", "pdq", "--workers", "1", "--quiet")
    expect_ok(result)
    assert not any(n.startswith("000003") for n in tar_names(out / "00000.tar"))
    assert "000003" not in sidecar_keys(out)
    # captions and JSON are not counted as undecodable images; nothing else here is
    assert report_of(out)["unmatchable"].get("pdq (tar member)", 0) == 0


@pytest.mark.parametrize("name", ["000003.tga", "000003.npy", "000003.cls2"])
def test_every_member_is_matched_by_content_hash_whatever_its_extension(
        tmp_path: Path, name: str) -> None:
    pics = images()
    listed = encoded("TGA", 5) if name.endswith(".tga") else b"\x93NUMPY" + bytes(range(200))
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries.append((name, listed))
    dataset = write_shard(tmp_path / "wds", entries)
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, listed))
    expect_ok(result)
    assert not any(n.startswith("000003") for n in tar_names(out / "00000.tar"))
    assert "000003" not in sidecar_keys(out)


def test_a_binary_member_that_is_no_image_is_counted_for_perceptual_rules(
        tmp_path: Path) -> None:
    from scrub.images.hashing import hash_image

    pics = images()
    entries = [m for i, k in enumerate(KEYS) for m in sample(k, pics[i])]
    entries.append(("000002.dat", bytes(range(256)) * 4))  # binary, not an image
    dataset = write_shard(tmp_path / "wds", entries)
    pdq = tmp_path / "pdq.txt"
    pdq.write_text(hash_image(encoded("PNG", 8), ["pdq"])["pdq"] + "\n")  # type: ignore
    out = tmp_path / "out"
    result = run_cli("apply", str(dataset), str(out), "--hashlist", str(pdq),
                     "--type", "pdq", "--workers", "1", "--quiet")
    expect_ok(result)
    assert report_of(out)["unmatchable"].get("pdq (tar member)") == 1


def test_scrub_hash_reads_gzip_and_pillow_only_formats(tmp_path: Path) -> None:
    import gzip

    pics = images()
    tga = encoded("TGA", 4)
    entries = [*sample("000000", pics[0]), ("000001.jpg.gz", gzip.compress(pics[1])),
               ("000001.txt", b"x"), ("000002.tga", tga), ("000002.txt", b"y")]
    dataset = write_shard(tmp_path / "wds", entries, keys=KEYS[:3])
    result = run_cli("hash", str(dataset / "00000.tar"), str(tmp_path / "h"),
                     "--types", "md5", "--quiet")
    expect_ok(result)
    rows = pl.read_parquet(tmp_path / "h" / "00000.parquet")
    assert rows["md5"].to_list() == [hashlib.md5(d).hexdigest() for d in (pics[0], pics[1], tga)]


def url_shard(folder: Path, keys: pa.Array | list, members: list[str]) -> Path:
    """Two samples in the tar (``members[i]`` + ``.jpg``/``.json``), a sidecar keyed ``keys``;
    the second row's URL is the opted-out one."""
    import pyarrow.parquet as pq

    pics = images()
    urls = ["https://good.example.com/a.jpg", "https://bad.example.com/b.jpg"]
    entries = []
    for i, stem in enumerate(members):
        entries += [(f"{stem}.jpg", pics[i]), (f"{stem}.json", json.dumps({"url": urls[i]})
                                               .encode())]
    write_shard(folder, entries)
    pq.write_table(pa.table({"key": keys, "url": urls, "caption": ["a", "b"]}),
                   folder / "00000.parquet")
    return folder


def opt_out(tmp_path: Path) -> Path:
    path = tmp_path / "urls.csv"
    path.write_text("type,value\nurl,https://bad.example.com/b.jpg\n")
    return path


@pytest.mark.parametrize("keys", [pa.array([0, 1], pa.int64()), pa.array([0, 1], pa.int32()),
                                  ["x/00000", "x/00001"], ["0", "1"], ["./00000", "./00001"]])
def test_a_row_dropped_by_url_takes_its_sample_however_the_sidecar_spells_keys(
        tmp_path: Path, keys: object) -> None:
    dataset = url_shard(tmp_path / "wds", keys, ["00000", "00001"])
    out = tmp_path / "out"
    result = apply(dataset, out, opt_out(tmp_path))
    expect_ok(result)
    assert tar_names(out / "00000.tar") == ["00000.jpg", "00000.json"]
    assert b"bad.example.com" not in (out / "00000.tar").read_bytes()


def test_a_member_match_takes_the_int_keyed_row(tmp_path: Path) -> None:
    pics = images()
    dataset = url_shard(tmp_path / "wds", pa.array([0, 1], pa.int64()), ["00000", "00001"])
    out = tmp_path / "out"
    result = apply(dataset, out, md5_list(tmp_path, pics[1]))
    expect_ok(result)
    assert pl.read_parquet(out / "00000.parquet")["key"].to_list() == [0]
    assert tar_names(out / "00000.tar") == ["00000.jpg", "00000.json"]


def test_a_dropped_row_that_names_no_sample_is_an_error(tmp_path: Path) -> None:
    dataset = url_shard(tmp_path / "wds", ["a", "b"], ["00000", "00001"])
    out = tmp_path / "out"
    result = apply(dataset, out, opt_out(tmp_path))
    expect_exit(result, 2)
    assert "00000.parquet" in result.output and "row 1" in result.output
    assert "bad.example.com" not in result.output
    assert not (out / "00000.tar").exists()


def test_a_dropped_row_img2dataset_did_not_download_needs_no_sample(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    # row 1 was never downloaded: no sample of its key in the tar (00002 is another sample)
    dataset = url_shard(tmp_path / "wds", ["00000", "00001"], ["00000", "00002"])
    table = pq.read_table(dataset / "00000.parquet")
    pq.write_table(table.append_column("status", pa.array(["success", "failed_to_download"])),
                   dataset / "00000.parquet")
    out = tmp_path / "out"
    result = apply(dataset, out, opt_out(tmp_path))
    expect_ok(result)
    assert pl.read_parquet(out / "00000.parquet")["key"].to_list() == ["00000"]
