"""Rescoring from images: open_clip ViT-L/14 (weights from a local checkpoint) over webdataset
tars, then the NSFW head.

Images are read and decoded by CPU worker processes (a torch ``DataLoader`` over each tar's
image members, order kept), embedded in batches on the GPU when there is one, L2-normalised as
clip-retrieval stores them, and scored. Per tar the output holds ``{name}.parquet`` (``key``,
float32 ``punsafe``, null where the image does not decode, and a ``status``), and, with
``write_embeddings``, ``img_emb/img_emb_{i}.npy`` (float16, row-aligned) so that later
rescoring can start from the embeddings. Nothing is downloaded: the checkpoint is a local file
(``.safetensors`` or a ``weights_only`` torch file) and the architecture an open_clip name or a
local JSON config.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from scrub.atomic import atomic_path
from scrub.errors import InvalidDatasetError, UserInputError
from scrub.images.job import HashShard, discover
from scrub.images.spool import local_tar
from scrub.images.tars import group_samples, read_members
from scrub.nsfw.head import LoadedHead
from scrub.nsfw.rescore import MODEL_KEY, ROWS_KEY, RescoreReport, _done, _gather, ray_gpus
from scrub.progress import Progress
from scrub.runtime import open_executor, run_units
from scrub.storage import ObjectPath, location

#: Larger images are not decoded (decompression bombs).
MAX_PIXELS = 50_000_000

#: open_clip's preprocessing: a PIL image to the model's input tensor.
Preprocess = Callable[[Image.Image], torch.Tensor]


class ClipModel(Protocol):
    """What scoring uses of an open_clip model."""

    visual: torch.nn.Module

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    def half(self) -> ClipModel: ...


def load_clip(checkpoint: Path, arch: str = "ViT-L-14", *, device: torch.device
              ) -> tuple[ClipModel, Preprocess, str]:
    """(model, preprocessing, id) of an open_clip model from a local checkpoint; ``arch`` is an
    open_clip model name or a path to a model config JSON."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    import open_clip

    if arch.endswith(".json"):
        config = Path(arch)
        if not config.is_file():
            raise UserInputError(f"{config}: no such model config")
        open_clip.add_model_config(config)
        arch = config.stem
    if arch not in open_clip.list_models():
        raise UserInputError(f"unknown open_clip architecture {arch!r}",
                             hint="e.g. ViT-L-14, or a model config .json")
    if not Path(checkpoint).is_file():
        raise UserInputError(f"{checkpoint}: no such CLIP checkpoint (weights load from a "
                             "local file, never from the network)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(checkpoint), device=device)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise UserInputError(f"{checkpoint}: not a {arch} checkpoint "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return model.eval(), preprocess, f"open_clip:{arch}:sha256:{digest.hexdigest()}"


class _TarImages(torch.utils.data.Dataset):
    """The first image of each sample of a tar, decoded and preprocessed (zeros and ``False``
    when it does not decode)."""

    def __init__(self, tar: Path, spans: list[tuple[int, int] | None],
                 preprocess: Preprocess) -> None:
        self.tar, self.spans, self.preprocess = tar, spans, preprocess
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        span = self.spans[index]
        if span is not None:
            with open(self.tar, "rb") as handle:
                handle.seek(span[0])
                data = handle.read(span[1])
            try:
                with Image.open(io.BytesIO(data)) as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise ValueError("too large")
                    tensor = self.preprocess(image.convert("RGB"))
                self._shape = tuple(tensor.shape)
                return tensor, True
            except Exception:  # noqa: BLE001 - any undecodable image is a status, not a crash
                pass
        return torch.zeros(self._shape or _probe_shape(self.preprocess)), False


def _probe_shape(preprocess: Preprocess) -> tuple[int, ...]:
    return tuple(preprocess(Image.new("RGB", (8, 8))).shape)


def rescore_images(source: str | Path | ObjectPath, output: str | Path | ObjectPath,
                   loaded: LoadedHead, checkpoint: Path, *,
                   device: torch.device, batch_size: int = 256, clip_arch: str = "ViT-L-14",
                   workers: int | None = None, write_embeddings: bool = False,
                   progress: bool = True, engine: str = "local", address: str | None = None,
                   auto_device: bool = False) -> RescoreReport:
    """Score the images of every tar of ``source`` into ``output`` (``engine="ray"``: one tar
    per Ray task, each worker process loading CLIP once from ``checkpoint``, which must be at
    the same path on every node; on GPUs for CUDA, or for ``auto_device`` when the cluster has
    GPUs). ``source`` and ``output`` may lie in object storage (the checkpoint is local)."""
    source, output = location(source), location(output)
    shards = [s for s in discover(source) if s.tar is not None]
    if not shards:
        raise UserInputError(f"{source}: no webdataset tars to score")
    settings = {"checkpoint": Path(checkpoint), "clip_arch": clip_arch,
                "batch_size": batch_size, "write_embeddings": write_embeddings,
                "output": output, "head": loaded.head, "head_id": loaded.model_id}
    report = RescoreReport()
    meter = Progress("rescore", len(shards), None, enabled=progress)
    settings.update(device=str(device), decoders=workers, spawn=False)
    gpus = 0.0
    if engine == "ray":
        gpus = float(ray_gpus(device, auto_device, address=address))
        # decoding processes inside a Ray worker: spawned, and only as many as asked (default
        # none)
        settings.update(head=loaded.head.cpu(), device="cuda" if gpus else "cpu",
                        decoders=workers or 0, spawn=True)
    with open_executor(engine, workers=None if engine == "ray" else 1, address=address,
                       num_gpus=gpus) as executor:  # locally one process holds the device
        executor.load(setup, settings)
        output.mkdir(parents=True, exist_ok=True)
        outcomes = run_units(executor, list(enumerate(shards)), meter=meter,
                             rows=lambda o: int(o.result["samples"]) if o.result else 0)
    _gather(report, outcomes)
    if report.shards == 0 and report.skipped == 0:
        raise InvalidDatasetError(f"{source}: no samples")
    return report


class _TarScorer:
    """CLIP and the head on one device; scores one tar per call into the output folder."""

    def __init__(self, settings: Mapping[str, Any], device: torch.device,
                 workers: int | None, *, spawn: bool = False) -> None:
        checkpoint, clip_arch = settings["checkpoint"], settings["clip_arch"]
        clip, self.preprocess, clip_id = load_clip(checkpoint, clip_arch, device=device)
        head = settings["head"]
        width = getattr(clip.visual, "output_dim", None)
        if width is not None and width != head.arch.dim:
            raise UserInputError(f"{checkpoint}: {clip_arch} makes {width}-value embeddings; "
                                 f"the {head.arch.name} head reads {head.arch.dim}")
        self.head = head.to(device)
        self.model_id = f"{settings['head_id']}+{clip_id}"
        self.half = device.type == "cuda"
        if self.half:
            clip, self.head = clip.half(), self.head.half()
        self.clip, self.device, self.settings = clip, device, settings
        self.workers = max(1, (os.cpu_count() or 2) - 1) if workers is None else workers
        self.context = "spawn" if spawn and self.workers else None

    def __call__(self, index: int, shard: HashShard) -> dict[str, Any]:
        """Score the tar of ``shard`` (one in object storage through a local copy,
        :mod:`scrub.images.spool`)."""
        if shard.tar is None:  # rescore_images hands tars only
            raise ValueError(f"shard {shard.name}: an image folder, not a tar")
        with local_tar(shard.tar) as tar:
            return self._score_tar(index, shard, tar)

    def _score_tar(self, index: int, shard: HashShard, tar: Path) -> dict[str, Any]:
        output, dim = self.settings["output"], self.settings["head"].arch.dim
        target = output / f"{shard.name}.parquet"
        samples = group_samples(read_members(tar))
        statuses: dict[str, int] = {}
        counts = {"shards": 0, "skipped": 0, "rows": 0, "scored": 0, "statuses": statuses,
                  "samples": len(samples)}
        if _done(target, self.model_id, len(samples)):
            counts["skipped"] = 1
            return counts
        spans = [(s.images[0].offset_data, s.images[0].size) if s.images and not s.repeated
                 else None for s in samples]
        loader = torch.utils.data.DataLoader(
            _TarImages(tar, spans, self.preprocess),
            batch_size=self.settings["batch_size"], num_workers=self.workers,
            pin_memory=self.half, shuffle=False, multiprocessing_context=self.context)
        scores = np.zeros(len(spans), dtype=np.float32)
        decoded = np.zeros(len(spans), dtype=bool)
        embeddings = np.zeros((len(spans), dim), dtype=np.float16)
        at = 0
        with torch.inference_mode():
            for pixels, ok in loader:
                pixels = pixels.to(self.device, non_blocking=True)
                features = self.clip.encode_image(pixels.half() if self.half else pixels,
                                                  normalize=True)
                values = self.head(features).float().cpu().numpy()
                n = len(values)
                scores[at:at + n], decoded[at:at + n] = values, ok.numpy()
                embeddings[at:at + n] = features.float().cpu().numpy().astype(np.float16)
                at += n
        status = ["ok" if d else "duplicate_key" if s.repeated else "no_image"
                  if not s.images else "undecodable" for d, s in zip(decoded, samples, strict=True)]
        table = pa.table({"key": [s.key for s in samples],
                          "punsafe": pa.array(scores, type=pa.float32(), mask=~decoded),
                          "status": status}).replace_schema_metadata(
            {MODEL_KEY: self.model_id.encode(), ROWS_KEY: str(len(samples)).encode()})
        if self.settings["write_embeddings"]:
            number = re.search(r"(\d+)$", shard.name)
            name = f"img_emb_{int(number.group(1)) if number else index}.npy"
            with atomic_path(output / "img_emb" / name) as tmp, open(tmp, "wb") as handle:
                np.save(handle, embeddings, allow_pickle=False)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        for name in set(status) - {"ok"}:
            statuses[name] = status.count(name)
        counts.update(shards=1, rows=len(samples), scored=int(decoded.sum()))
        return counts


def setup(payload: Mapping[str, Any]) -> Callable[[tuple[int, Any]], dict[str, Any]]:
    """The image rescoring task: CLIP and the head loaded once, then one tar per call
    (units are ``(index, shard)``)."""
    scorer = _TarScorer(payload, torch.device(payload["device"]), payload["decoders"],
                        spawn=payload["spawn"])
    return lambda unit: scorer(*unit)
