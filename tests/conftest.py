"""Shared fixtures: small generated LAION-like datasets and planted hash lists."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from scrub.synthetic import generate_dataset, read_column

# CI (.ci/run sets CI=true) draws the same property-test examples every run, so a landing is
# never decided by the luck of a draw; local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20k-row, 4-shard sample without embeddings, shared read-only by the session."""
    root = tmp_path_factory.mktemp("sample")
    return generate_dataset(root / "dataset", rows=20_000, shards=4, seed=11, embeddings=False)


@pytest.fixture
def dataset_copy(sample_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the sample, for tests that modify or break shards."""
    target = tmp_path / "dataset"
    shutil.copytree(sample_dataset, target)
    return target


@pytest.fixture(scope="session")
def planted(sample_dataset: Path) -> dict[str, np.ndarray]:
    """Global row numbers chosen for planting, per kind, disjoint."""
    rng = np.random.default_rng(5)
    rows = rng.permutation(20_000)
    return {"md5": np.sort(rows[:37]), "sha256": np.sort(rows[37:50]),
            "url": np.sort(rows[50:71])}


@pytest.fixture(scope="session")
def planted_values(sample_dataset: Path, planted: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """The planted rows' values: md5 and sha256 hex digests and URLs."""
    return {
        "md5": read_column(sample_dataset, "md5").gather(planted["md5"]).to_list(),
        "sha256": read_column(sample_dataset, "sha256").gather(planted["sha256"]).to_list(),
        "url": read_column(sample_dataset, "URL").gather(planted["url"]).to_list(),
    }


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    """A real S3 server (SeaweedFS ``weed mini``) on loopback for the session."""
    from tests.s3server import SeaweedServer

    server = SeaweedServer()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):  # type: ignore[no-untyped-def]
    """This process pointed at the session's S3 server (standard AWS settings in the
    environment), with a fresh bucket: ``s3.bucket``, ``s3.uri(key)``, ``s3.server``."""
    from tests.s3server import restore_env, use_server_env

    saved = use_server_env(s3_server)

    class _S3:
        server = s3_server
        bucket = s3_server.new_bucket()
        env = s3_server.env()

        def uri(self, key: str = "") -> str:
            return f"s3://{self.bucket}/{key}".rstrip("/")

    yield _S3()
    restore_env(saved)
    with contextlib.suppress(Exception):  # a test may have broken the bucket on purpose
        s3_server.drop_bucket(_S3.bucket)
