"""Item 17 (releases): a corrupt shard given to ``release verify``, and object, garbage or empty
``.npy`` embeddings given to ``release build``, are one clear line naming the file and what is
wrong, with a documented exit code (3: the release cannot be trusted; 2: bad input), never
"internal error"."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import expect_exit, expect_ok
from tests.security.release_setup import Setup, make_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(tmp_path_factory.mktemp("item17"), rows=1_500)


@pytest.fixture(scope="module")
def release(setup: Setup) -> Path:
    out = setup.root / "out"
    result = setup.build(out)
    expect_ok(result)
    return out / "safe"


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("scrub: ")]
    assert len(lines) == 1, output
    assert "internal error" not in output and "Traceback" not in output
    return lines[0]


CORRUPT = {
    "empty": lambda body: b"",
    "truncated": lambda body: body[: len(body) // 2],
    "footer": lambda body: body[:-12] + b"\xff" * 12,
    "garbage": lambda body: bytes(range(256)) * 8,
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_verify_names_a_corrupt_shard(setup: Setup, release: Path, tmp_path: Path,
                                      case: str) -> None:
    copy = setup.copy_variant(release, tmp_path / "copy")
    shard = copy / "part-00001.parquet"
    shard.write_bytes(CORRUPT[case](shard.read_bytes()))
    result = setup.verify(copy)
    expect_exit(result, 3)
    line = one_error_line(result.output)
    assert f"{shard}: sha256 differs from the manifest" in line


def object_array(path: Path, rows: int) -> None:
    array = np.empty((rows, 4), dtype=object)
    array[:] = "x"
    np.save(path, array, allow_pickle=True)


BAD_NPY = {
    "object": object_array,
    "garbage": lambda path, rows: path.write_bytes(b"\x80\x04garbage, not numpy" * 50),
    "empty": lambda path, rows: path.write_bytes(b""),
    "header only": lambda path, rows: path.write_bytes(
        np.lib.format.magic(1, 0) + b"\x46\x00{'descr': '<f2', 'fortran_order': False, "
        + f"'shape': ({rows}, 768), }}".encode().ljust(60) + b"\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_build_names_unreadable_embeddings(setup: Setup, tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(setup.data, data)
    target = data / "img_emb" / "img_emb_1.npy"
    rows = np.load(target, mmap_mode="r").shape[0]
    target.unlink()
    BAD_NPY[case](target, rows)
    result = setup.build(tmp_path / "out", data=data)
    expect_exit(result, 2)
    line = one_error_line(result.output)
    assert f"{target}: not a readable .npy array" in line
    assert f"expected a .npy array of shape ({rows}, dim), float16 or float32" in line
    assert not (tmp_path / "out" / "safe").exists()
