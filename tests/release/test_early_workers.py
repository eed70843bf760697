"""A fresh local release build starts its workers before it plans (they warm up while the
lists and the ledger load) and gives the bytes of a build that starts them afterwards; builds
whose shards to build are not known yet start none early."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import scrub.release.build as building
from scrub.release.staging import STAGING
from scrub.runtime import LocalExecutor
from scrub.synthetic import generate_dataset
from tests.helpers import expect_ok
from tests.release.planted import build, setup  # noqa: F401 (a fixture)


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_build_on_early_workers_gives_the_bytes_of_one_on_its_own(
        setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    started: list[object] = []
    original = building.early_workers

    @contextmanager
    def spying(*args: Any, **options: Any) -> Iterator[Any]:
        with original(*args, **options) as executor:
            started.append(executor)
            yield executor

    monkeypatch.setattr(building, "early_workers", spying)
    expect_ok(build(setup, tmp_path / "early", "--no-ledger-update"))
    assert len(started) == 1 and isinstance(started[0], LocalExecutor)

    @contextmanager
    def none(*args: Any, **options: Any) -> Iterator[None]:
        yield None

    monkeypatch.setattr(building, "early_workers", none)
    expect_ok(build(setup, tmp_path / "late", "--no-ledger-update"))
    assert _files(tmp_path / "early") == _files(tmp_path / "late")


def test_workers_start_early_only_for_a_fresh_local_build(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", rows=40, shards=2, seed=3, embeddings=False)
    out = tmp_path / "out"

    def early(source: Path = data, engine: str = "local", workers: int | None = 2,
              incremental: bool = False) -> object:
        with building.early_workers(source, out, engine=engine, workers=workers,
                                    incremental=incremental) as executor:
            return executor

    assert early(engine="ray") is None
    assert early(incremental=True) is None  # it settles shards before building any
    assert early(workers=1) is None
    assert early(source=tmp_path / "missing") is None  # the build reports it, in its order
    started = early()
    assert isinstance(started, LocalExecutor) and started.workers == 2
    (out / STAGING).mkdir(parents=True)
    assert early() is None  # a staged build resumes: its shards left to build come later
