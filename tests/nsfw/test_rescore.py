"""``scrub nsfw rescore`` from embeddings: alignment, nulls for NaN/inf, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from scrub.nsfw.head import load_head, random_head, save_head
from scrub.nsfw.rescore import MODEL_KEY, rescore
from scrub.synthetic import generate_dataset
from tests.helpers import expect_ok, run_cli

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nsfw")
    return generate_dataset(root / "data", rows=3_000, shards=3, seed=4, embeddings=True)


@pytest.fixture
def data(embedded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(embedded, copy)
    return copy


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "head.safetensors"
    save_head(random_head("vit-l-14", seed=7), path)
    return path


def expected_scores(weights: Path, data: Path, index: int) -> np.ndarray:
    x = np.load(data / "img_emb" / f"img_emb_{index}.npy").astype(np.float32)
    with torch.inference_mode():
        return load_head(weights).head(torch.from_numpy(x)).numpy()


def test_scores_are_row_aligned_with_each_shard(data: Path, weights: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "scores"
    report = rescore(data, out, load_head(weights), device=CPU, batch_size=700,
                     progress=False)
    assert (report.shards, report.rows, report.scored) == (3, 3_000, 3_000)
    shards = sorted(p.name for p in data.glob("*.parquet"))
    assert sorted(p.name for p in out.iterdir()) == shards
    for index, name in enumerate(shards):
        table = pq.read_table(out / name)
        assert table.schema.field("punsafe").type == pa.float32()
        assert table["key"].to_pylist() == pq.read_table(data / name)["key"].to_pylist()
        got = table["punsafe"].to_numpy()
        assert np.abs(got - expected_scores(weights, data, index)).max() < 1e-6
        assert table.schema.metadata[MODEL_KEY] == load_head(weights).model_id.encode()


def test_scores_do_not_depend_on_the_thread_count(data: Path, weights: Path,
                                                 tmp_path: Path) -> None:
    # A multi-threaded CPU matrix product rounds differently from a single-threaded one (this
    # head on 700 rows: scores differ in the 7th digit), so the local executor (all cores) and a
    # Ray worker (one thread) would write different bytes unless each pass runs on one thread.
    outputs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = tmp_path / f"threads-{threads}"
            rescore(data, out, load_head(weights), device=CPU, batch_size=700, progress=False)
            assert torch.get_num_threads() == threads  # restored after scoring
            outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))})
    finally:
        torch.set_num_threads(before)
    assert len(outputs[0]) == 3
    assert outputs[0] == outputs[1] == outputs[2]


def test_nan_and_inf_embeddings_get_null_scores_and_are_counted(data: Path, weights: Path,
                                                                tmp_path: Path) -> None:
    path = data / "img_emb" / "img_emb_1.npy"
    array = np.load(path)
    array[[5, 600], 3] = np.nan
    array[777, 100] = np.inf
    np.save(path, array)
    report = rescore(data, tmp_path / "o", load_head(weights), device=CPU, progress=False)
    assert report.statuses == {"nonfinite_embedding": 3} and report.scored == 2_997
    scores = pq.read_table(tmp_path / "o" / "part-00001.parquet")["punsafe"]
    assert [i for i, v in enumerate(scores.to_pylist()) if v is None] == [5, 600, 777]


def test_a_rerun_resumes_and_keeps_finished_files(data: Path, weights: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "scores"
    rescore(data, out, load_head(weights), device=CPU, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "part-00002.parquet").unlink()
    report = rescore(data, out, load_head(weights), device=CPU, progress=False)
    assert (report.skipped, report.shards) == (2, 1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in stamp.items()
               if n != "part-00002.parquet")
    other = tmp_path / "other.safetensors"
    save_head(random_head("vit-l-14", seed=8), other)
    assert rescore(data, out, load_head(other), device=CPU, progress=False).shards == 3


def test_an_embedding_column_scores_like_the_npy_files(data: Path, weights: Path,
                                                       tmp_path: Path) -> None:
    listed = tmp_path / "listed"
    listed.mkdir()
    for index, shard in enumerate(sorted(data.glob("*.parquet"))):
        table = pq.read_table(shard)
        vectors = np.load(data / "img_emb" / f"img_emb_{index}.npy").astype(np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 768)
        pq.write_table(table.append_column("embedding", column), listed / shard.name)
    a = rescore(data, tmp_path / "a", load_head(weights), device=CPU, progress=False)
    b = rescore(listed, tmp_path / "b", load_head(weights), device=CPU,
                embedding_column="embedding", progress=False)
    assert a.rows == b.rows
    for name in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert np.array_equal(pq.read_table(tmp_path / "a" / name)["punsafe"].to_numpy(),
                              pq.read_table(tmp_path / "b" / name)["punsafe"].to_numpy())


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return run_cli("nsfw", "rescore", *args)


@pytest.mark.slow
def test_the_command_and_its_bad_input(data: Path, weights: Path, tmp_path: Path) -> None:
    ok = invoke(str(data), str(tmp_path / "s"), "--head", str(weights), "--device", "cpu",
                "--quiet", "--json")
    expect_ok(ok)
    assert json.loads(ok.stdout)["scored"] == 3_000
    if not torch.cuda.is_available():
        cuda = invoke(str(data), str(tmp_path / "c"), "--head", str(weights), "--device", "cuda")
        assert cuda.exit_code == 2 and "no CUDA device" in cuda.output and "hint" in cuda.output
    pinned = invoke(str(data), str(tmp_path / "p"), "--head", str(weights), "--sha256", "ab" * 32)
    assert pinned.exit_code == 2 and "head.safetensors: sha256 is" in pinned.output
    wrong = tmp_path / "b32.safetensors"
    save_head(random_head("vit-b-32"), wrong)
    shaped = invoke(str(data), str(tmp_path / "w"), "--head", str(wrong), "--arch", "vit-l-14")
    assert shaped.exit_code == 2 and "b32.safetensors: tensor mean has shape" in shaped.output
    config = tmp_path / "model.toml"
    config.write_text(f'head = "{weights.name}"\ndevice = "cpu"\nbatch_size = 512\n')
    from_file = invoke(str(data), str(tmp_path / "t"), "--model-config", str(config), "-q")
    expect_ok(from_file)
    config.write_text('head = "x"\ncolour = "red"\n')
    assert "unknown setting(s) colour" in invoke(str(data), str(tmp_path / "u"),
                                                 "--model-config", str(config)).output


def test_embeddings_not_aligned_with_their_shard_are_refused(data: Path, weights: Path,
                                                              tmp_path: Path) -> None:
    path = data / "img_emb" / "img_emb_2.npy"
    np.save(path, np.load(path)[:-1])
    result = invoke(str(data), str(tmp_path / "s"), "--head", str(weights), "--device", "cpu")
    assert result.exit_code == 2
    assert "img_emb_2.npy holds 999 embeddings but" in result.output
    assert "part-00002.parquet has 1000 rows" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path needs CUDA")
def test_gpu_scores_agree_with_cpu(data: Path, weights: Path, tmp_path: Path) -> None:
    rescore(data, tmp_path / "cpu", load_head(weights), device=CPU, progress=False)
    rescore(data, tmp_path / "gpu", load_head(weights), device=torch.device("cuda"),
            batch_size=512, progress=False)
    for path in sorted((tmp_path / "cpu").iterdir()):
        a = pq.read_table(path)["punsafe"].to_numpy()
        b = pq.read_table(tmp_path / "gpu" / path.name)["punsafe"].to_numpy()
        assert np.abs(a - b).max() < 1e-3


def test_apply_drops_rows_by_the_score_it_trusts(data: Path, weights: Path,
                                                 tmp_path: Path) -> None:
    scores = tmp_path / "scores"
    rescore(data, scores, load_head(weights), device=CPU, progress=False)
    rescored = pq.read_table(sorted(scores.glob("*.parquet")))["punsafe"].to_numpy()
    stored = pq.read_table(sorted(data.glob("*.parquet")))["punsafe"].to_numpy()
    keys = np.array(pq.read_table(sorted(data.glob("*.parquet")))["key"].to_pylist())
    threshold = float(np.quantile(rescored, 0.9))

    def kept(*flags: str) -> set[str]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        result = run_cli("apply", str(data), str(out), "--punsafe-above",
                         str(threshold), *flags, "--workers", "1", "--quiet",
                         "--json")
        expect_ok(result)
        assert set(json.loads(result.stdout)["removed_by_reason"]) == {"nsfw"}
        return set(pq.read_table(sorted(out.glob("*.parquet")))["key"].to_pylist())

    assert kept("--scores", str(scores)) == set(keys[~(rescored > threshold)])
    assert kept("--scores", str(scores), "--trust-score", "stored") == \
        set(keys[~(stored > threshold)])
    assert kept() == set(keys[~(stored > threshold)])
    bad = run_cli("apply", str(data), str(tmp_path / "x"), "--punsafe-above", "0.5",
                  "--trust-score", "rescored")
    assert bad.exit_code == 2 and "needs --scores" in bad.output
    table = pq.read_table(scores / "part-00001.parquet")
    pq.write_table(table.slice(0, 999), scores / "part-00001.parquet")
    short = run_cli("apply", str(data), str(tmp_path / "y"), "--punsafe-above",
                    "0.5", "--scores", str(scores), "--workers", "1", "--quiet")
    assert short.exit_code != 0
    assert "part-00001.parquet holds 999 scores but" in short.output
