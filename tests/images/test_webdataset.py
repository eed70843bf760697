"""``scrub hash`` and ``scrub apply`` on a generated webdataset in img2dataset's layout."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scrub.images.synthetic import generate_webdataset, jpeg_bytes, picture
from scrub.layout import companion
from tests.helpers import expect_ok, run_cli


def members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as handle:
        return {m.name: handle.extractfile(m).read() for m in handle.getmembers()  # type: ignore
                if m.isfile()}


def raw(tar: Path) -> dict[str, bytes]:
    """Each member's raw bytes in the tar (headers and padded data)."""
    out = {}
    with tarfile.open(tar) as handle:
        data = tar.read_bytes()
        for m in handle.getmembers():
            out[m.name] = data[m.offset: m.offset_data + -(-m.size // 512) * 512]
    return out


@pytest.fixture()
def webdataset(tmp_path: Path) -> Path:
    return generate_webdataset(tmp_path / "wds", shards=3, samples=30, seed=5)


@pytest.mark.slow
def test_apply_removes_exactly_the_matched_samples_from_tars_and_sidecars(
        webdataset: Path, tmp_path: Path) -> None:
    shard1 = members(webdataset / "00001.tar")
    by_md5 = ["000010003.jpg", "000010011.jpg"]
    hashlist = tmp_path / "md5.txt"
    hashlist.write_text("".join(hashlib.md5(shard1[n]).hexdigest() + "\n" for n in by_md5))
    sidecar2 = pl.read_parquet(webdataset / "00002.parquet")
    url = sidecar2.filter(pl.col("key") == "000020007")["url"].item()
    urls = tmp_path / "urls.csv"
    urls.write_text(f"type,value\nurl,{url}\n")
    out = tmp_path / "out"
    result = run_cli("apply", str(webdataset), str(out), "--hashlist",
                     str(hashlist), "--hashlist", str(urls), "--workers", "2",
                     "--quiet")
    expect_ok(result)
    gone = {"000010003", "000010011", "000020007"}
    for shard in ("00000", "00001", "00002"):
        before_rows = pl.read_parquet(webdataset / f"{shard}.parquet")
        after_rows = pl.read_parquet(out / f"{shard}.parquet")
        assert after_rows.equals(before_rows.filter(~pl.col("key").is_in(list(gone))))
        before, after = raw(webdataset / f"{shard}.tar"), raw(out / f"{shard}.tar")
        expected = {n: b for n, b in before.items() if n.split(".")[0] not in gone}
        assert list(after) == list(expected)  # member order kept
        assert after == expected  # every other member byte-identical, headers included
    # The shard without a match is the input file, unchanged.
    assert (out / "00000.tar").read_bytes() == (webdataset / "00000.tar").read_bytes()
    report = json.loads((companion(out) / "apply-report.json").read_text())
    assert report["rows_removed"] == 3


@pytest.mark.slow
def test_perceptual_matches_find_re_encoded_images(webdataset: Path, tmp_path: Path) -> None:
    from scrub.images.hashing import hash_image

    image = members(webdataset / "00000.tar")["000000004.jpg"]
    import io

    from PIL import Image
    recompressed = io.BytesIO()
    Image.open(io.BytesIO(image)).save(recompressed, "JPEG", quality=60)
    listed = tmp_path / "pdq.txt"
    listed.write_text(hash_image(recompressed.getvalue(), ["pdq"])["pdq"] + "\n")
    out = tmp_path / "out"
    result = run_cli("apply", str(webdataset), str(out), "--hashlist", str(listed),
                     "--type", "pdq", "--workers", "1", "--quiet")
    expect_ok(result)
    assert "000000004.jpg" not in members(out / "00000.tar")
    assert "000000004" not in pl.read_parquet(out / "00000.parquet")["key"].to_list()


def test_hash_writes_one_row_per_sample_with_statuses(webdataset: Path, tmp_path: Path) -> None:
    # A corrupt image, a sample without an image and a repeated key among good ones.
    tar = webdataset / "00001.tar"
    content = members(tar)
    good = jpeg_bytes(picture(np.random.default_rng(9), 32))
    broken = webdataset / "broken.tar"
    with tarfile.open(broken, "w") as out:
        for name, data in [("a.jpg", good), ("a.txt", b"cap"), ("b.jpg", b"\xff\xd8garbage"),
                           ("c.txt", b"no image"), ("d.jpg", b""), ("a.json", b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io
            out.addfile(info, io.BytesIO(data))
    target = tmp_path / "hashes"
    result = run_cli("hash", str(webdataset), str(target), "--types", "md5,pdq",
                     "--workers", "2", "--json")
    expect_ok(result)
    rows = pl.read_parquet(target / "00001.parquet")
    images = [n for n in content if n.endswith(".jpg")]
    assert rows["key"].to_list() == [n[:-4] for n in images]
    assert rows["md5"].to_list() == [hashlib.md5(content[n]).hexdigest() for n in images]
    assert set(rows["status"]) == {"ok"}
    odd = pl.read_parquet(target / "broken.parquet")
    assert odd.select("key", "status").rows() == [
        ("a", "ok"), ("b", "undecodable"), ("c", "no_image"), ("d", "undecodable"),
        ("a", "duplicate_key")]
    assert odd["md5"][1] == hashlib.md5(b"\xff\xd8garbage").hexdigest()
    report = json.loads(result.stdout)
    assert report["by_status"]["undecodable"] == 2
    # A rerun resumes: nothing is hashed again.
    again = run_cli("hash", str(webdataset), str(target), "--types", "md5,pdq",
                    "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["samples"] == report["samples"]


def test_a_truncated_tar_is_named_and_the_other_shards_complete(webdataset: Path,
                                                                 tmp_path: Path) -> None:
    tar = webdataset / "00002.tar"
    tar.write_bytes(tar.read_bytes()[: 20_000])
    target = tmp_path / "hashes"
    result = run_cli("hash", str(webdataset), str(target), "--types", "sha256")
    assert result.exit_code == 2
    assert "00002" in result.output and "truncated" in result.output
    assert (target / "00000.parquet").is_file() and (target / "00001.parquet").is_file()
    assert not (target / "00002.parquet").exists()
    hashlist = tmp_path / "l.txt"
    hashlist.write_text("0" * 32 + "\n")
    out = tmp_path / "out"
    applied = run_cli("apply", str(webdataset), str(out), "--hashlist",
                      str(hashlist), "--workers", "1", "--quiet")
    assert applied.exit_code == 2 and "00002.parquet" in applied.output
    assert not (out / "00002.tar").exists() and (out / "00001.tar").is_file()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_header_reader_agrees_with_tarfile(tmp_path: Path, fmt: int) -> None:
    import io

    from scrub.images.tars import read_members, rewrite_tar

    path = tmp_path / "t.tar"
    long_dir = "d" * 120 if fmt != tarfile.USTAR_FORMAT else "d" * 40
    with tarfile.open(path, "w", format=fmt) as out:
        folder = tarfile.TarInfo("sub")
        folder.type = tarfile.DIRTYPE
        out.addfile(folder)
        for i, size in enumerate([0, 1, 511, 512, 513, 5000]):
            info = tarfile.TarInfo(f"{long_dir}/k{i}.jpg" if i % 2 else f"k{i}.txt")
            info.size = size
            if fmt == tarfile.PAX_FORMAT and i == 3:
                info.pax_headers = {"comment": "é" * 10}
            out.addfile(info, io.BytesIO(bytes([i]) * size))
    ours = read_members(path)
    with tarfile.open(path) as handle:
        theirs = handle.getmembers()
    assert [(m.name, m.offset, m.offset_data, m.size, m.isfile()) for m in ours] == \
        [(m.name, m.offset, m.offset_data, m.size if m.isfile() else 0, m.isfile())
         for m in theirs]
    rewrite_tar(path, tmp_path / "r.tar", ours, {f"{long_dir}/k1", "k2"})
    assert members(tmp_path / "r.tar") == {n: b for n, b in members(path).items()
                                           if n not in (f"{long_dir}/k1.jpg", "k2.txt")}
