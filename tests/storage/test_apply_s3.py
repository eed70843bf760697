"""`scrub apply` with INPUT and OUTPUT in object storage, on a real S3 server (SeaweedFS):
byte-identical to the local run, either way and mixed; resume after a kill; the bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import expect_exit, expect_ok, run_cli, write_planted_lists
from tests.s3server import SECRET_KEY, local_tree

pytestmark = pytest.mark.slow


@pytest.fixture
def lists(tmp_path: Path, planted_values: dict[str, list[str]]) -> list[Path]:
    return write_planted_lists(tmp_path / "lists", planted_values)


def _args(lists: list[Path]) -> list[str]:
    return [arg for path in lists for arg in ("--hashlist", str(path))]


def _local_run(sample_dataset: Path, tmp_path: Path, lists: list[Path]) -> dict[str, bytes]:
    expect_ok(run_cli("apply", sample_dataset, tmp_path / "local", *_args(lists),
                      "--workers", "2", "-q"))
    return local_tree(tmp_path / "local")


def _shards(tree: dict[str, bytes], prefix: str = "") -> dict[str, bytes]:
    """The parquet objects directly under ``prefix`` (the shards a reader takes)."""
    return {k[len(prefix):].lstrip("/"): v for k, v in tree.items()
            if k.startswith(prefix) and k.endswith(".parquet")
            and "/" not in k[len(prefix):].lstrip("/")}


@pytest.mark.parametrize("where", ["s3-to-s3", "s3-to-local", "local-to-s3"])
def test_apply_in_object_storage_writes_the_local_bytes(
        where: str, s3, sample_dataset: Path, tmp_path: Path, lists: list[Path]) -> None:
    expected = _local_run(sample_dataset, tmp_path, lists)
    s3.server.upload_folder(sample_dataset, s3.bucket, "laion")
    source = s3.uri("laion") if where.startswith("s3") else str(sample_dataset)
    output = s3.uri("clean") if where.endswith("s3") else str(tmp_path / "out")
    result = expect_ok(run_cli("apply", source, output, *_args(lists), "--workers", "2", "-q"))
    assert "rows removed: 71" in result.output
    if where.endswith("s3"):
        written = s3.server.objects(s3.bucket, "clean")
        assert _shards(written, "clean") == expected
        assert "clean.scrub/apply-report.json" in written
        assert not s3.server.uploads(s3.bucket)
        assert not [k for k in written if "partial" in k or "scrub-tmp" in k]
    else:
        assert local_tree(tmp_path / "out") == expected


def test_wrong_credentials_exit_3_without_the_secret(s3, sample_dataset: Path,
                                                     tmp_path: Path, lists: list[Path]) -> None:
    s3.server.upload_folder(sample_dataset, s3.bucket, "laion")
    from scrub.storage import filesystems, writes

    os.environ["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-" + "x" * 8
    filesystems.reset()
    writes.reset()
    result = run_cli("apply", s3.uri("laion"), s3.uri("clean"), *_args(lists), "-q")
    expect_exit(result, 3, "refused access")
    assert "not-the-secret" not in result.output and SECRET_KEY not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("scrub:")]) == 1


def test_missing_bucket_exit_2(s3, sample_dataset: Path, lists: list[Path]) -> None:
    expect_exit(run_cli("apply", "s3://no-such-bucket-scrub/laion", s3.uri("clean"),
                        *_args(lists), "-q"), 2, "no such bucket")
    expect_exit(run_cli("apply", sample_dataset, "s3://no-such-bucket-scrub/clean",
                        *_args(lists), "-q"), 2, "no such bucket")


def test_prefix_without_shards_exit_2(s3, lists: list[Path]) -> None:
    s3.server.client().put_object(Bucket=s3.bucket, Key="empty/readme.txt", Body=b"hi")
    expect_exit(run_cli("apply", s3.uri("empty"), s3.uri("clean"), *_args(lists), "-q"), 2,
                "no parquet shards")
    expect_exit(run_cli("apply", s3.uri("nothing-here"), s3.uri("clean"), *_args(lists),
                        "-q"), 2, "no parquet shards")


@pytest.fixture(scope="module")
def large_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 shards of 45k rows (about 6.5 MB each: two parts of 5 MiB)."""
    from scrub.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("large") / "dataset", rows=270_000,
                            shards=6, seed=3, embeddings=False)


def _scrub(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "scrub", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_then_resume_ends_with_the_uninterrupted_bytes(
        s3, large_dataset: Path, tmp_path: Path) -> None:
    from scrub.synthetic import read_column, write_hashlist

    hashlist = write_hashlist(tmp_path / "md5.txt",
                              read_column(large_dataset, "md5").gather(range(0, 270_000, 997)))
    expect_ok(run_cli("apply", large_dataset, tmp_path / "local", "--hashlist", hashlist, "-q"))
    s3.server.upload_folder(large_dataset, s3.bucket, "laion")
    env = {**os.environ, "SCRUB_S3_PART_MIB": "5"}
    args = ["apply", s3.uri("laion"), s3.uri("clean"), "--hashlist", str(hashlist),
            "--workers", "1", "-q"]
    run = _scrub(*args, env=env)
    deadline = time.monotonic() + 120
    while not any(k.startswith("clean.scrub/done/") for k in
                  s3.server.objects(s3.bucket, "clean.scrub/done")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    before = s3.server.objects(s3.bucket, "clean")
    assert 0 < len(_shards(before, "clean")) < 6  # killed mid-run
    assert "clean.scrub/apply-report.json" not in before
    # A killed run's upload left incomplete (as a kill mid-part would): aborted by the rerun.
    client = s3.server.client()
    upload = client.create_multipart_upload(Bucket=s3.bucket, Key="clean/part-00005.parquet")
    client.upload_part(Bucket=s3.bucket, Key="clean/part-00005.parquet", PartNumber=1,
                       UploadId=upload["UploadId"], Body=b"x" * 1024)
    assert s3.server.uploads(s3.bucket)
    rerun = _scrub(*args, env=env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    written = s3.server.objects(s3.bucket, "clean")
    assert _shards(written, "clean") == _shards(local_tree(tmp_path / "local"))
    assert not s3.server.uploads(s3.bucket)
    assert not [k for k in written if "partial" in k or "tmp" in k]


def test_half_written_earlier_run_of_another_job_is_refused(
        s3, sample_dataset: Path, lists: list[Path]) -> None:
    s3.server.upload_folder(sample_dataset, s3.bucket, "laion")
    client = s3.server.client()
    client.put_object(Bucket=s3.bucket, Key="clean.scrub/job.json", Body=b'{"job": "other"}')
    client.put_object(Bucket=s3.bucket, Key="clean/part-00000.parquet", Body=b"PAR1")
    expect_exit(run_cli("apply", s3.uri("laion"), s3.uri("clean"), *_args(lists), "-q"), 2,
                "different scrub job")
    # --force replaces it: the other job's objects go, this job's shards come.
    expect_ok(run_cli("apply", s3.uri("laion"), s3.uri("clean"), *_args(lists), "-q",
                      "--force"))
    written = s3.server.objects(s3.bucket, "clean")
    assert len(_shards(written, "clean")) == 4
    assert b"other" not in written["clean.scrub/job.json"]


def test_stray_object_in_output_is_refused(s3, sample_dataset: Path,
                                           lists: list[Path]) -> None:
    s3.server.upload_folder(sample_dataset, s3.bucket, "laion")
    s3.server.client().put_object(Bucket=s3.bucket, Key="clean/other.parquet", Body=b"PAR1")
    expect_exit(run_cli("apply", s3.uri("laion"), s3.uri("clean"), *_args(lists), "-q",
                        "--force"), 2, "not this job's shards")
