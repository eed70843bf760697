"""Item 18 (releases): embeddings are published only in clip-retrieval's form, a (rows, dim)
float16 or float32 array; a 1-D, string, float64 (or other non-float16/32), 3-D or 0-wide
``.npy`` file is refused (exit 2) with the file and the expected shape and dtype."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item18"), rows=1_500)


def build_with(setup: Setup, tmp_path: Path, make) -> tuple[object, Path, int]:  # type: ignore
    """A build of a copy of the dataset whose second embedding file is ``make(original)``."""
    data = tmp_path / "data"
    shutil.copytree(setup.data, data)
    target = data / "img_emb" / "img_emb_1.npy"
    original = np.load(target)
    np.save(target, make(original), allow_pickle=False)
    return setup.build(tmp_path / "out", data=data), target, original.shape[0]


BAD = {
    "1-D": lambda a: a[:, 0],
    "strings 1-D": lambda a: np.array([f"row {i}" for i in range(a.shape[0])]),
    "strings": lambda a: np.array([[f"row {i}"] * 4 for i in range(a.shape[0])]),
    "float64": lambda a: a.astype(np.float64),
    "int8": lambda a: (a * 100).astype(np.int8),
    "complex64": lambda a: a.astype(np.complex64),
    "bool": lambda a: a > 0,
    "3-D": lambda a: a.reshape(a.shape[0], 2, -1),
    "0-wide": lambda a: a[:, :0],
    "structured": lambda a: np.zeros((a.shape[0], 4), dtype=[("x", "<f2"), ("y", "<f2")]),
    "big-endian float64": lambda a: a.astype(">f8"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_embeddings_of_another_shape_or_dtype_are_refused(setup: Setup, tmp_path: Path,
                                                          case: str) -> None:
    result, target, rows = build_with(setup, tmp_path, BAD[case])
    expect_exit(result, 2)
    assert "internal error" not in result.output
    assert str(target) in result.output
    assert f"expected a .npy array of shape ({rows}, dim), float16 or float32" in result.output
    assert not (tmp_path / "out" / "safe").exists()


def test_float32_embeddings_are_published_as_they_are(setup: Setup, tmp_path: Path) -> None:
    result, _, _ = build_with(setup, tmp_path, lambda a: a.astype(np.float32))
    expect_ok(result)
    published = np.load(tmp_path / "out" / "safe.scrub" / "img_emb" / "img_emb_1.npy")
    assert published.dtype == np.float32 and published.ndim == 2
    # and float64 is not silently published beside them
    again, target, _ = build_with(setup, tmp_path / "again", lambda a: a.astype(np.float64))
    assert again.exit_code == 2 and str(target) in again.output
