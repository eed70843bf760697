"""`scrub hash`, `scrub nsfw rescore` and webdataset scrubbing (`scrub apply` of sidecar + tar)
with locations in object storage, on a real S3 server (SeaweedFS): byte-identical to the local
run, S3 to S3 and mixed; resume after a kill; a bad tar named as locally."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scrub.images.synthetic import generate_webdataset
from tests.helpers import expect_exit, expect_ok, run_cli
from tests.s3server import local_tree

pytestmark = pytest.mark.slow


@pytest.fixture
def webdataset(tmp_path: Path) -> Path:
    return generate_webdataset(tmp_path / "wds", shards=3, samples=24, seed=8)


def _shards(tree: dict[str, bytes], prefix: str, *suffixes: str) -> dict[str, bytes]:
    """The objects directly under ``prefix`` ending in one of ``suffixes`` (what readers of the
    output take), by name."""
    found = {}
    for key, data in tree.items():
        name = key[len(prefix):].lstrip("/") if key.startswith(prefix + "/") else None
        if name is not None and "/" not in name and name.endswith(suffixes or (".parquet",)):
            found[name] = data
    return found


def _clean(s3, prefix: str) -> dict[str, bytes]:
    """The objects written under ``prefix`` (and its companion), checked for leftovers: no
    incomplete upload, no partial or temporary object."""
    written = s3.server.objects(s3.bucket, prefix)
    assert not s3.server.uploads(s3.bucket)
    assert not [k for k in written if "partial" in k or "scrub-tmp" in k or ".copy" in k]
    return written


def _hash(source: object, output: object, *extra: str):
    return run_cli("hash", source, output, "--types", "md5,sha256,pdq", "--workers", "2",
                   "--quiet", "--json", *extra)


@pytest.mark.parametrize("where", ["s3-to-s3", "s3-to-local", "local-to-s3"])
def test_hash_of_tars_in_object_storage_writes_the_local_bytes(
        where: str, s3, webdataset: Path, tmp_path: Path) -> None:
    local = json.loads(expect_ok(_hash(webdataset, tmp_path / "local")).stdout)
    expected = local_tree(tmp_path / "local")
    assert sorted(expected) == ["00000.parquet", "00001.parquet", "00002.parquet"]
    s3.server.upload_folder(webdataset, s3.bucket, "wds")
    source = s3.uri("wds") if where.startswith("s3") else str(webdataset)
    output = s3.uri("hashes") if where.endswith("s3") else str(tmp_path / "out")
    report = json.loads(expect_ok(_hash(source, output)).stdout)
    assert {k: v for k, v in report.items() if k not in ("input", "output")} == {
        k: v for k, v in local.items() if k not in ("input", "output")}
    if where.endswith("s3"):
        written = _clean(s3, "hashes")
        assert _shards(written, "hashes") == expected
        assert json.loads(written["hashes.scrub/hash-report.json"]) == report
    else:
        assert local_tree(tmp_path / "out") == expected
    again = json.loads(expect_ok(_hash(source, output)).stdout)  # a rerun resumes: the same
    assert again == report


def test_hash_of_one_tar_and_of_an_image_folder_in_object_storage(
        s3, webdataset: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    with tarfile.open(webdataset / "00001.tar") as tar:
        for member in tar.getmembers()[:9]:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            (images / ("sub" if member.name < "000010002" else "") / member.name).write_bytes(
                data)
    (images / ".hidden.jpg").write_bytes(b"not scanned")
    for source, name in ((webdataset / "00001.tar", "one"), (images, "folder")):
        expect_ok(_hash(source, tmp_path / name))
        prefix = f"in-{name}"
        if source.is_file():
            s3.server.client().upload_file(str(source), s3.bucket, f"{prefix}/00001.tar")
            remote = s3.uri(f"{prefix}/00001.tar")
        else:
            s3.server.upload_folder(source, s3.bucket, prefix)
            remote = s3.uri(prefix)
        expect_ok(_hash(remote, s3.uri(f"out-{name}")))
        assert _shards(_clean(s3, f"out-{name}"), f"out-{name}") == local_tree(tmp_path / name)


def test_hash_killed_mid_run_resumes_to_the_same_bytes(s3, tmp_path: Path) -> None:
    data = generate_webdataset(tmp_path / "wds", shards=8, samples=60, seed=3)
    expect_ok(_hash(data, tmp_path / "local"))
    s3.server.upload_folder(data, s3.bucket, "wds")
    command = [sys.executable, "-m", "scrub", "hash", s3.uri("wds"), s3.uri("hashes"),
               "--types", "md5,sha256,pdq", "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, env={**os.environ}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            done = s3.server.client().list_objects_v2(Bucket=s3.bucket,
                                                      Prefix="hashes.scrub/done/")
            if done.get("KeyCount", 0) >= 2:
                break
            time.sleep(0.05)
        running = process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert running  # killed mid-run: some shards done, the others not
    expect_ok(_hash(s3.uri("wds"), s3.uri("hashes")))
    assert _shards(_clean(s3, "hashes"), "hashes") == local_tree(tmp_path / "local")


def test_a_missing_or_truncated_tar_in_object_storage_is_named_as_locally(
        s3, webdataset: Path, tmp_path: Path) -> None:
    tar = webdataset / "00002.tar"
    tar.write_bytes(tar.read_bytes()[: 20_000])
    s3.server.upload_folder(webdataset, s3.bucket, "wds")
    for source, output, where in ((webdataset, tmp_path / "local", str(webdataset)),
                                  (s3.uri("wds"), s3.uri("hashes"), s3.uri("wds"))):
        result = run_cli("hash", source, output, "--types", "sha256", "--quiet")
        expect_exit(result, 2, f"{where}/00002.tar: truncated tar")
    local_line = _line(run_cli("hash", webdataset, tmp_path / "local", "--types", "sha256",
                               "--quiet"), str(webdataset))
    remote_line = _line(run_cli("hash", s3.uri("wds"), s3.uri("hashes"), "--types", "sha256",
                                "--quiet"), s3.uri("wds"))
    assert local_line == remote_line
    assert _shards(_clean(s3, "hashes"), "hashes") == {
        k: v for k, v in local_tree(tmp_path / "local").items()}
    for missing in (webdataset / "nope.tar", s3.uri("wds/nope.tar")):
        expect_exit(run_cli("hash", missing, tmp_path / "x", "--quiet"), 2,
                    f"{missing}: no such file or folder")


def _line(result, where: str) -> str:
    """The error lines of a run with the input's location taken out."""
    return "\n".join(line.replace(where, "INPUT") for line in result.output.splitlines()
                     if "00002" in line)


# --- webdataset scrubbing: scrub apply of sidecar + tar ------------------------------------

def _lists(webdataset: Path, folder: Path) -> list[str]:
    """An md5 list naming two images of shard 1 and a URL list naming a row of shard 2."""
    folder.mkdir()
    with tarfile.open(webdataset / "00001.tar") as tar:
        images = {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore
                  if m.name in ("000010003.jpg", "000010011.jpg")}
    md5 = folder / "md5.txt"
    md5.write_text("".join(hashlib.md5(data).hexdigest() + "\n" for data in images.values()))
    sidecar = pl.read_parquet(webdataset / "00002.parquet")
    url = sidecar.filter(pl.col("key") == "000020007")["url"].item()
    urls = folder / "urls.csv"
    urls.write_text(f"type,value\nurl,{url}\n")
    return ["--hashlist", str(md5), "--hashlist", str(urls)]


@pytest.mark.parametrize("where", ["s3-to-s3", "s3-to-local", "local-to-s3"])
def test_apply_of_a_webdataset_in_object_storage_writes_the_local_bytes(
        where: str, s3, webdataset: Path, tmp_path: Path) -> None:
    lists = _lists(webdataset, tmp_path / "lists")
    expect_ok(run_cli("apply", webdataset, tmp_path / "local", *lists, "--workers", "2", "-q"),
              )
    expected = local_tree(tmp_path / "local")
    assert sorted(expected) == [f"0000{i}.{ext}" for i in range(3) for ext in ("parquet", "tar")]
    with tarfile.open(tmp_path / "local" / "00001.tar") as tar:
        assert "000010003.jpg" not in tar.getnames() and "000010004.jpg" in tar.getnames()
    s3.server.upload_folder(webdataset, s3.bucket, "wds")
    source = s3.uri("wds") if where.startswith("s3") else str(webdataset)
    output = s3.uri("clean") if where.endswith("s3") else str(tmp_path / "out")
    result = expect_ok(run_cli("apply", source, output, *lists, "--workers", "2", "-q"))
    assert "rows removed: 3" in result.output
    if not where.endswith("s3"):
        assert local_tree(tmp_path / "out") == expected
        return
    assert _shards(_clean(s3, "clean"), "clean", ".parquet", ".tar") == expected
    # a lost output tar is made again by a rerun (its marker no longer holds), the same bytes
    s3.server.client().delete_object(Bucket=s3.bucket, Key="clean/00001.tar")
    expect_ok(run_cli("apply", source, output, *lists, "--workers", "2", "-q"))
    assert _shards(_clean(s3, "clean"), "clean", ".parquet", ".tar") == expected


def test_apply_names_a_truncated_tar_in_object_storage_as_locally(
        s3, webdataset: Path, tmp_path: Path) -> None:
    lists = _lists(webdataset, tmp_path / "lists")
    tar = webdataset / "00002.tar"
    tar.write_bytes(tar.read_bytes()[: 20_000])
    s3.server.upload_folder(webdataset, s3.bucket, "wds")
    local = run_cli("apply", webdataset, tmp_path / "local", *lists, "--workers", "1", "-q")
    remote = run_cli("apply", s3.uri("wds"), s3.uri("clean"), *lists, "--workers", "1", "-q")
    for result, where in ((local, str(webdataset)), (remote, s3.uri("wds"))):
        expect_exit(result, 2, "00002.parquet", f"{where}/00002.tar: truncated tar")
    assert _line(local, str(webdataset)) == _line(remote, s3.uri("wds"))
    written = _clean(s3, "clean")
    assert "clean/00002.tar" not in written and "clean/00002.parquet" not in written
    assert _shards(written, "clean", ".parquet", ".tar") == {
        k: v for k, v in local_tree(tmp_path / "local").items()}


# --- nsfw rescore ---------------------------------------------------------------------------

def test_rescore_from_embeddings_in_object_storage_writes_the_local_bytes(
        s3, tmp_path: Path) -> None:
    from scrub.nsfw.head import random_head, save_head
    from scrub.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "data", rows=2_000, shards=3, seed=4, embeddings=True)
    weights = tmp_path / "head.safetensors"
    save_head(random_head("vit-l-14", seed=7), weights)
    args = ["--head", str(weights), "--device", "cpu", "--batch-size", "300", "--json", "-q"]
    local = json.loads(expect_ok(run_cli("nsfw", "rescore", data, tmp_path / "local", *args)
                                 ).stdout)
    expected = local_tree(tmp_path / "local")
    assert len(expected) == 3 and local["rows"] == 2_000
    s3.server.upload_folder(data, s3.bucket, "laion")
    remote = json.loads(expect_ok(run_cli("nsfw", "rescore", s3.uri("laion"), s3.uri("scores"),
                                          *args)).stdout)
    assert remote == local
    assert _shards(_clean(s3, "scores"), "scores") == expected
    again = json.loads(expect_ok(run_cli("nsfw", "rescore", s3.uri("laion"), s3.uri("scores"),
                                         *args)).stdout)
    assert again["skipped"] == 3 and again["shards"] == 0  # each scored shard is its marker


# The tiny random-weight CLIP (config, checkpoint) of the local image-rescoring tests.
from tests.nsfw.test_images import tiny_clip  # noqa: E402,F401 (a fixture)


def test_rescore_of_tars_in_object_storage_writes_the_local_bytes(
        s3, tiny_clip: tuple[Path, Path], tmp_path: Path) -> None:
    from scrub.nsfw.head import random_head, save_head

    config, checkpoint = tiny_clip
    data = generate_webdataset(tmp_path / "wds", shards=2, samples=10, seed=6, size=40)
    weights = tmp_path / "head.safetensors"
    save_head(random_head("vit-l-14", seed=4), weights)
    args = ["--head", str(weights), "--clip", str(checkpoint), "--clip-arch", str(config),
            "--device", "cpu", "--workers", "0", "--batch-size", "4", "--write-embeddings",
            "--json", "-q"]
    local = json.loads(expect_ok(run_cli("nsfw", "rescore", data, tmp_path / "local", *args)
                                 ).stdout)
    expected = local_tree(tmp_path / "local")
    assert sorted(expected) == ["00000.parquet", "00001.parquet", "img_emb/img_emb_0.npy",
                                "img_emb/img_emb_1.npy"]
    s3.server.upload_folder(data, s3.bucket, "wds")
    remote = json.loads(expect_ok(run_cli("nsfw", "rescore", s3.uri("wds"), s3.uri("scores"),
                                          *args)).stdout)
    assert remote == local
    written = _clean(s3, "scores")
    assert {k[len("scores/"):]: v for k, v in written.items()} == expected
    assert np.load(tmp_path / "local" / "img_emb" / "img_emb_0.npy").shape == (10, 768)


def test_a_tar_gone_from_object_storage_is_worded_as_a_missing_local_one(
        s3, tmp_path: Path) -> None:
    from scrub.errors import InvalidDatasetError
    from scrub.images.spool import local_tar
    from scrub.images.tars import read_members
    from scrub.storage import location

    messages = []
    for where in (tmp_path / "gone.tar", location(s3.uri("wds/gone.tar"))):
        with pytest.raises(InvalidDatasetError) as caught, \
                local_tar(where, tmp_path / "copies") as tar:
            read_members(tar)
        messages.append(caught.value.message.replace(str(where), "TAR"))
    assert messages[0] == messages[1]
    assert messages[0] == "TAR: not a readable tar ([Errno 2] No such file or directory: 'TAR')"
    assert not list((tmp_path / "copies").iterdir())


def test_a_tar_is_copied_from_object_storage_in_bounded_reads(
        s3, webdataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scrub.images import spool
    from scrub.images.tars import read_members
    from scrub.storage import ObjectPath, location

    sizes: list[int] = []
    real_open = ObjectPath.open

    class Recording:
        def __init__(self, handle) -> None:  # type: ignore[no-untyped-def]
            self.handle = handle

        def read(self, size: int) -> bytes:
            sizes.append(size)
            return bytes(self.handle.read(size))

        def __enter__(self) -> Recording:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr(ObjectPath, "open", lambda self, mode="rb": Recording(
        real_open(self, mode)))
    monkeypatch.setattr(spool, "BLOCK", 16_384)
    s3.server.upload_folder(webdataset, s3.bucket, "wds")
    with spool.local_tar(location(s3.uri("wds/00001.tar")), tmp_path / "copies") as copy:
        assert copy.read_bytes() == (webdataset / "00001.tar").read_bytes()
        assert len(read_members(copy)) == len(read_members(webdataset / "00001.tar"))
    assert max(sizes) == 16_384 and len(sizes) > (webdataset / "00001.tar").stat().st_size // 16_384
    assert not list((tmp_path / "copies").iterdir())  # the copy goes with the block
