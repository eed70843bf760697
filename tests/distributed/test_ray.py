"""``--engine ray`` on a local Ray cluster started here (2 CPUs): byte-identical outputs to the
local executor for apply, release build and NSFW rescoring; resume; a worker killed mid-run;
no list value in Ray's own files; bad engine flags."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psutil
import pytest

from scrub.synthetic import generate_dataset
from tests.helpers import expect_ok, folder_bytes, run_cli, write_planted_lists
from tests.nsfw.test_images import tars, tiny_clip  # noqa: F401 (fixtures)
from tests.release.planted import build as build_release
from tests.release.planted import setup  # noqa: F401 (a fixture)

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def apply(dataset: Path, out: Path, lists: list[Path], *extra: str):  # type: ignore[no-untyped-def]
    args = ["apply", str(dataset), str(out), "--workers", "2", "--quiet", "--json"]
    for path in lists:
        args += ["--hashlist", str(path)]
    return run_cli(*args, *extra)


def report_of(result) -> dict:  # type: ignore[no-untyped-def,type-arg]
    report = json.loads(result.stdout)
    report.pop("output")
    return report


def test_apply_on_ray_gives_the_local_bytes_and_resumes(
        sample_dataset: Path, planted_values: dict[str, list[str]], tmp_path: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    local = apply(sample_dataset, tmp_path / "local", lists)
    expect_ok(local)
    on_ray = apply(sample_dataset, tmp_path / "ray", lists, "--engine", "ray")
    expect_ok(on_ray)
    assert report_of(on_ray) == report_of(local)
    assert report_of(on_ray)["rows_removed"] == sum(len(v) for v in planted_values.values())
    expected = folder_bytes(tmp_path / "local")  # the shards (the report lies beside them)
    got = folder_bytes(tmp_path / "ray")
    assert got == expected
    # resume at shard granularity: lose one shard and its completion marker, rerun
    lost = sorted(p for p in (tmp_path / "ray").glob("*.parquet"))[2]
    lost.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.parquet")}
    again = apply(sample_dataset, tmp_path / "ray", lists, "--engine", "ray")
    expect_ok(again)
    assert lost.read_bytes() == expected[lost.name]
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.parquet")}
    assert {n: after[n] for n in before} == before  # the others were not rewritten


def test_a_killed_worker_is_replaced_and_the_output_is_identical(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", rows=240_000, shards=24, seed=3,
                            embeddings=False)
    values = {"md5": [], "sha256": [], "url": []}  # type: ignore[var-annotated]
    import polars as pl

    frame = pl.read_parquet(sorted(data.glob("*.parquet")))
    values = {"md5": frame["md5"].gather(list(range(0, 240_000, 997))).to_list(),
              "sha256": frame["sha256"].gather([5, 77_777]).to_list(),
              "url": frame["URL"].gather([9, 200_001]).to_list()}
    lists = write_planted_lists(tmp_path / "lists", values)
    local = apply(data, tmp_path / "local", lists)
    expect_ok(local)
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            done = list((tmp_path / "ray").glob("part-*.parquet"))
            if len(done) >= 3:  # mid-run: some shards done, most to do
                for proc in psutil.process_iter(["cmdline"]):
                    line = " ".join(proc.info["cmdline"] or [])
                    if "ray::_shard_call" in line:
                        proc.kill()
                        killed.append(proc.pid)
                        return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    on_ray = apply(data, tmp_path / "ray", lists, "--engine", "ray")
    killer.join()
    assert killed, "no worker was running a shard mid-run to kill"
    expect_ok(on_ray)
    assert len(list((tmp_path / "ray").glob("part-*.parquet"))) == 24
    assert report_of(on_ray) == report_of(local)
    expected, got = folder_bytes(tmp_path / "local"), folder_bytes(tmp_path / "ray")
    assert got == expected


def test_no_list_value_reaches_rays_files(sample_dataset: Path,
                                          planted_values: dict[str, list[str]],
                                          tmp_path: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    result = apply(sample_dataset, tmp_path / "out", lists, "--engine", "ray")
    expect_ok(result)
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    needles = [v.encode() for v in planted_values["md5"] + planted_values["sha256"]
               + planted_values["url"]]
    needles += [v.upper().encode() for v in planted_values["sha256"]]
    scanned = 0
    for path in session.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            assert not any(n in data for n in needles), path
    assert scanned > 5


def test_release_build_on_ray_gives_the_local_bytes(setup: dict, tmp_path: Path) -> None:  # noqa: F811
    local = build_release(setup, tmp_path / "local", "--no-ledger-update")
    expect_ok(local)
    on_ray = build_release(setup, tmp_path / "ray", "--no-ledger-update", "--engine", "ray")
    expect_ok(on_ray)
    assert json.loads(on_ray.stdout)["release_id"] == json.loads(local.stdout)["release_id"]
    for variant in ("research", "research-safe", "research.scrub", "research-safe.scrub"):
        for path in sorted((tmp_path / "local" / variant).rglob("*")):
            if path.is_file():
                twin = tmp_path / "ray" / variant / path.relative_to(tmp_path / "local" / variant)
                assert twin.read_bytes() == path.read_bytes(), path.name


def test_nsfw_rescore_on_ray_gives_the_local_scores(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from scrub.nsfw.head import random_head, save_head

    data = generate_dataset(tmp_path / "data", rows=3_000, shards=3, seed=4, embeddings=True)
    save_head(random_head("vit-l-14", seed=7), tmp_path / "head.safetensors")
    common = ["nsfw", "rescore", str(data), "--head", str(tmp_path / "head.safetensors"),
              "--device", "cpu", "--batch-size", "700", "--quiet", "--json"]
    local = run_cli(*common[:3], str(tmp_path / "local"), *common[3:])
    expect_ok(local)
    on_ray = run_cli(*common[:3], str(tmp_path / "ray"), *common[3:],
                     "--engine", "ray")
    expect_ok(on_ray)
    assert json.loads(on_ray.stdout) == json.loads(local.stdout)
    assert folder_bytes(tmp_path / "ray") == folder_bytes(tmp_path / "local")


def test_nsfw_rescore_of_images_on_ray_gives_the_local_scores(
        tars: Path, tiny_clip: tuple[Path, Path],  # noqa: F811
        tmp_path: Path) -> None:
    from scrub.nsfw.head import random_head, save_head

    config, checkpoint = tiny_clip
    save_head(random_head("vit-l-14", seed=4), tmp_path / "head.safetensors")
    common = ["--head", str(tmp_path / "head.safetensors"), "--clip", str(checkpoint),
              "--clip-arch", str(config), "--device", "cpu", "--workers", "0",
              "--batch-size", "4", "--write-embeddings", "--quiet", "--json"]
    local = run_cli("nsfw", "rescore", str(tars), str(tmp_path / "local"), *common)
    expect_ok(local)
    on_ray = run_cli("nsfw", "rescore", str(tars), str(tmp_path / "ray"), *common,
                     "--engine", "ray")
    expect_ok(on_ray)
    assert json.loads(on_ray.stdout) == json.loads(local.stdout)
    for name in ("00000.parquet", "00001.parquet", "img_emb/img_emb_0.npy"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    # an error inside the workers (no such checkpoint there) is the driver's error
    missing = [*common]
    missing[missing.index("--clip") + 1] = str(tmp_path / "nowhere.safetensors")
    failed = run_cli("nsfw", "rescore", str(tars), str(tmp_path / "x"), *missing,
                     "--engine", "ray")
    assert failed.exit_code == 2 and "no such CLIP checkpoint" in failed.output


def test_bad_engine_flags(sample_dataset: Path, planted_values: dict[str, list[str]],
                          tmp_path: Path) -> None:
    lists = write_planted_lists(tmp_path / "lists", planted_values)
    result = apply(sample_dataset, tmp_path / "a", lists, "--engine", "spark")
    assert result.exit_code == 2 and "--engine 'spark'" in result.output
    result = apply(sample_dataset, tmp_path / "b", lists, "--address", "auto")
    assert result.exit_code == 2 and "--address is for --engine ray" in result.output
    result = apply(sample_dataset, tmp_path / "c", lists, "--engine", "ray", "--address",
                   "127.0.0.1:1")
    assert result.exit_code == 2 and "nothing answers there" in result.output
    result = apply(sample_dataset, tmp_path / "d", lists, "--engine", "ray", "--address", "x")
    assert result.exit_code == 2 and "expected auto, HOST:PORT" in result.output
    assert not any((tmp_path / name).exists() for name in "abcd")
    shutil.rmtree(tmp_path / "lists")
