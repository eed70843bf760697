"""``scrub hash`` on the runtime: its state beside OUTPUT, resume of only what is missing, and
``--engine ray`` running the shards as Ray tasks with the local bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.images.synthetic import generate_webdataset
from tests.helpers import expect_exit, expect_ok, run_cli


@pytest.fixture()
def webdataset(tmp_path: Path) -> Path:
    return generate_webdataset(tmp_path / "wds", shards=3, samples=12, seed=8)


def hash_into(source: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("hash", source, out, "--types", "md5,pdq", "--quiet", "--json", *extra)


def shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_hash_keeps_its_state_beside_output_and_resumes_only_what_is_missing(
        webdataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "hashes"
    first = json.loads(expect_ok(hash_into(webdataset, out, "--workers", "2")).stdout)
    assert sorted(shards(out)) == ["00000.parquet", "00001.parquet", "00002.parquet"]
    state = tmp_path / "hashes.scrub"
    assert json.loads((state / "hash-report.json").read_text()) == first
    assert len(list((state / "done").iterdir())) == 3
    expected = shards(out)
    (out / "00001.parquet").unlink()
    kept = {n: (out / n).stat().st_mtime_ns for n in ("00000.parquet", "00002.parquet")}
    again = json.loads(expect_ok(hash_into(webdataset, out)).stdout)
    assert again == first and shards(out) == expected
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # not hashed again


def test_hash_refuses_another_jobs_output(webdataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "hashes"
    expect_ok(hash_into(webdataset, out))
    expect_exit(run_cli("hash", webdataset, out, "--types", "sha256", "--quiet"), 2,
                "different scrub job")
    expect_ok(run_cli("hash", webdataset, out, "--types", "sha256", "--quiet", "--force"))


@pytest.mark.slow
def test_hash_on_ray_runs_ray_tasks_and_gives_the_local_bytes(
        webdataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from scrub.runtime import distributed

    streamed: list[int] = []
    real = distributed.stream

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        for index, envelope in real(*args, **kwargs):
            streamed.append(index)
            yield index, envelope

    monkeypatch.setattr(distributed, "stream", spy)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local = expect_ok(hash_into(webdataset, tmp_path / "local"))
        assert streamed == []
        on_ray = expect_ok(hash_into(webdataset, tmp_path / "ray", "--engine", "ray"))
        assert sorted(streamed) == [0, 1, 2]  # every shard was a Ray task
        report = json.loads(on_ray.stdout)
        assert report.pop("output") != json.loads(local.stdout).pop("output")
        assert report == {k: v for k, v in json.loads(local.stdout).items() if k != "output"}
        assert shards(tmp_path / "ray") == shards(tmp_path / "local")
        (tmp_path / "ray" / "00002.parquet").unlink()
        streamed.clear()
        expect_ok(hash_into(webdataset, tmp_path / "ray", "--engine", "ray"))
        assert streamed == [0]  # resumed: only the missing shard ran
        assert shards(tmp_path / "ray") == shards(tmp_path / "local")
    finally:
        ray.shutdown()
