"""``scrub release build`` on the runtime: its shards are tasks the runtime's executors run,
a killed build resumes only the shards it had not finished, and a shard that fails fails the
build with its own message while the others are kept for the rerun."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from scrub.errors import InvalidDatasetError
from scrub.release import task as release_task
from scrub.release.staging import MARKERS, STAGING
from tests.helpers import expect_exit, expect_ok
from tests.release.planted import add_verified, build, setup  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _spy(monkeypatch: pytest.MonkeyPatch, fail: Callable[[str, int], None]) -> list[str]:
    """Record the shards the release task builds (in this process: ``--workers 1``), after
    ``fail(shard name, calls so far)`` had its say."""
    built: list[str] = []
    original = release_task.build_shard

    def building(plan: Any, groups: Any, shard_task: Any) -> Any:
        fail(shard_task.shard.name, len(built))
        built.append(shard_task.shard.name)
        return original(plan, groups, shard_task)

    monkeypatch.setattr(release_task, "build_shard", building)
    return built


def _never(name: str, calls: int) -> None:
    return None


def test_the_shards_run_on_the_runtime_executor(setup: dict, tmp_path: Path,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import scrub.release.build as building

    opened: list[tuple[str, int | None]] = []
    loaded: list[object] = []
    original = building.open_executor

    def spying(engine: str, **options: Any) -> Any:
        opened.append((engine, options.get("workers")))
        executor = original(engine, **options)
        load = executor.load

        def loading(setup_fn: Any, payload: object) -> None:
            loaded.append(setup_fn)
            load(setup_fn, payload)

        monkeypatch.setattr(executor, "load", loading)
        return executor

    monkeypatch.setattr(building, "open_executor", spying)
    expect_ok(build(setup, tmp_path / "out", "--no-ledger-update"))
    assert opened == [("local", 2)] and loaded == [release_task.setup]


def test_a_killed_build_resumes_only_its_unfinished_shards(
        setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    reference = tmp_path / "reference"
    expect_ok(build(setup, reference, "--no-ledger-update"))
    out = tmp_path / "out"

    def kill_third(name: str, calls: int) -> None:
        if calls == 2:
            raise KeyboardInterrupt

    first = _spy(monkeypatch, kill_third)
    expect_exit(build(setup, out, "--no-ledger-update", "--workers", "1"), 130)
    markers = out / STAGING / MARKERS
    finished = sorted(p.name[: -len(".json")] for p in markers.glob("*.json"))
    assert finished == first and len(first) == 2
    monkeypatch.undo()
    again = _spy(monkeypatch, _never)
    expect_ok(build(setup, out, "--no-ledger-update", "--workers", "1"))
    shards = sorted(p.name for p in setup["data"].glob("*.parquet"))
    assert sorted(again) == sorted(set(shards) - set(first))  # only the unfinished ones
    assert _files(out) == _files(reference)


def test_a_failed_shard_fails_the_build_with_its_message_and_the_rest_is_kept(
        setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    shards = sorted(p.name for p in setup["data"].glob("*.parquet"))
    bad = shards[1]

    def refuse(name: str, calls: int) -> None:
        if name == bad:
            raise InvalidDatasetError(f"{name}: refused on purpose")

    _spy(monkeypatch, refuse)
    out = tmp_path / "out"
    expect_exit(build(setup, out, "--no-ledger-update", "--workers", "1"), 2,
                f"{bad}: refused on purpose")
    recorded = sorted(p.name[: -len(".json")] for p in (out / STAGING / MARKERS).glob("*.json"))
    assert recorded == [s for s in shards if s != bad]
    monkeypatch.undo()
    again = _spy(monkeypatch, _never)
    expect_ok(build(setup, out, "--no-ledger-update", "--workers", "1"))
    assert again == [bad]


def test_an_incremental_rebuild_on_ray_gives_the_local_bytes(setup: dict,  # noqa: F811
                                                              tmp_path: Path) -> None:
    """On Ray the tasks themselves reuse or rebuild the shards (the driver reads none)."""
    ray = pytest.importorskip("ray")
    base = tmp_path / "base"
    expect_ok(build(setup, base, "--no-ledger-update", "--release-id", "base"))
    shards = sorted(setup["data"].glob("*.parquet"))
    add_verified(setup, "safety", "ray@example.org", pl.read_parquet(shards[1])["URL"][5])
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    expect_ok(build(setup, local, "--no-ledger-update", "--release-id", "inc",
                    "--from", str(base)))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        expect_ok(build(setup, on_ray, "--no-ledger-update", "--release-id", "inc",
                        "--from", str(base), "--engine", "ray"))
    finally:
        ray.shutdown()
    assert _files(on_ray) == _files(local)
