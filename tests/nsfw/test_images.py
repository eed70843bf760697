"""``scrub nsfw rescore --clip``: a tiny random-weight open_clip model (built in code, saved as a
local checkpoint: no download) over webdataset tars, then the head."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from scrub.images.synthetic import jpeg_bytes, picture
from scrub.nsfw.head import load_head, random_head, save_head
from scrub.nsfw.images import load_clip
from scrub.nsfw.rescore import rescore
from tests.helpers import expect_ok, run_cli

TINY = {"embed_dim": 768,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16,
                       "head_width": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2,
                     "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model config, checkpoint) of a tiny CLIP with random weights."""
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip")
    config = root / "tiny-clip.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip")
    checkpoint = root / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
    return config, checkpoint


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tars(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    folder = tmp_path / "wds"
    folder.mkdir()
    for shard in range(2):
        samples = [(f"{shard:05d}{i:04d}", {"jpg": jpeg_bytes(picture(rng, 48)), "txt": b"c"})
                   for i in range(9)]
        if shard == 1:
            samples[3] = (samples[3][0], {"jpg": b"\xff\xd8 not really a jpeg", "txt": b"c"})
            samples[6] = (samples[6][0], {"txt": b"caption only"})
        write_tar(folder / f"{shard:05d}.tar", samples)
    return folder


@pytest.mark.slow
def test_images_are_embedded_and_scored(tars: Path, tiny_clip: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    config, checkpoint = tiny_clip
    weights = tmp_path / "head.safetensors"
    save_head(random_head("vit-l-14", seed=4), weights)
    out = tmp_path / "scores"
    result = run_cli("nsfw", "rescore", str(tars), str(out), "--head", str(weights),
                     "--clip", str(checkpoint), "--clip-arch", str(config),
                     "--device", "cpu", "--workers", "0", "--batch-size", "4",
                     "--write-embeddings", "--json")
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["rows"] == 18 and report["scored"] == 16
    assert report["statuses"] == {"undecodable": 1, "no_image": 1}

    clip, preprocess, _ = load_clip(checkpoint, str(config), device=torch.device("cpu"))
    head = load_head(weights).head
    for shard in ("00000", "00001"):
        table = pq.read_table(out / f"{shard}.parquet")
        assert table["key"].to_pylist() == [f"{shard}{i:04d}" for i in range(9)]
        with tarfile.open(tars / f"{shard}.tar") as tar:
            images = {m.name[:-4]: tar.extractfile(m).read()  # type: ignore[union-attr]
                      for m in tar.getmembers() if m.name.endswith(".jpg")}
        for key, score, status in zip(table["key"].to_pylist(), table["punsafe"].to_pylist(),
                                      table["status"].to_pylist(), strict=False):
            try:
                pixels = preprocess(Image.open(io.BytesIO(images[key])).convert("RGB"))
            except (KeyError, OSError):
                assert score is None and status in ("undecodable", "no_image")
                continue
            with torch.inference_mode():
                features = clip.encode_image(pixels[None], normalize=True)
                expected = float(head(features)[0])
            assert status == "ok" and abs(score - expected) < 1e-5
    # the embeddings written beside the scores rescore to the same values
    again = rescore(out, tmp_path / "from-embeddings", load_head(weights),
                    device=torch.device("cpu"), progress=False)
    assert again.rows == 18
    for shard in ("00000", "00001"):
        a = pq.read_table(out / f"{shard}.parquet")["punsafe"].to_numpy(zero_copy_only=False)
        b = pq.read_table(tmp_path / "from-embeddings" / f"{shard}.parquet")["punsafe"]
        ok = ~np.isnan(a.astype(float))
        assert np.abs(a[ok] - b.to_numpy(zero_copy_only=False)[ok]).max() < 2e-3


def test_a_missing_checkpoint_or_wrong_width_is_refused(tars: Path, tiny_clip, tmp_path: Path
                                                        ) -> None:  # type: ignore[no-untyped-def]
    config, checkpoint = tiny_clip
    weights = tmp_path / "b32.safetensors"
    save_head(random_head("vit-b-32"), weights)
    missing = run_cli("nsfw", "rescore", str(tars), str(tmp_path / "o"), "--head",
                      str(weights), "--clip", str(tmp_path / "nope.pt"),
                      "--clip-arch", str(config), "--device", "cpu")
    assert missing.exit_code == 2 and "nope.pt: no such CLIP checkpoint" in missing.output
    wrong = run_cli("nsfw", "rescore", str(tars), str(tmp_path / "o"), "--head",
                    str(weights), "--clip", str(checkpoint), "--clip-arch",
                    str(config), "--device", "cpu")
    assert wrong.exit_code == 2 and "768-value embeddings" in wrong.output
