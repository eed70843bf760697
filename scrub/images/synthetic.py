"""A generated webdataset in img2dataset's layout, for tests, benchmarks and the demo.

``NNNNN.tar`` holds ``{key}.jpg``, ``{key}.txt`` (caption) and ``{key}.json`` (metadata) per
downloaded sample; ``NNNNN.parquet`` is the sidecar with img2dataset's columns (``url``,
``caption``, ``key``, ``status``, ``error_message``, ``width``, ``height``, ``original_width``,
``original_height``, ``sha256``), including samples that failed to download (no tar members).
Images are distinct, deterministic pictures (gradients and blocks), JPEG-encoded.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def picture(rng: np.random.Generator, size: int) -> Image.Image:
    """A distinct RGB picture: a random gradient plus a few random blocks."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        channels.append(127 + 100 * np.sin(3 * (a * x + b * y) + c * 6))
    pixels = np.stack(channels, axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, size - size // 4, 2)
        pixels[y0: y0 + size // 4, x0: x0 + size // 4] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def generate_webdataset(folder: Path | str, *, shards: int, samples: int, seed: int = 0,
                        size: int = 64, failed_every: int = 17) -> Path:
    """Write ``shards`` pairs of tar + sidecar with ``samples`` rows each; return the folder.

    Every ``failed_every``-th row failed to download (in the sidecar, not in the tar).
    """
    import hashlib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for shard in range(shards):
        rows: dict[str, list[object]] = {name: [] for name in (
            "url", "caption", "key", "status", "error_message", "width", "height",
            "original_width", "original_height", "sha256")}
        with tarfile.open(folder / f"{shard:05d}.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for index in range(samples):
                key = f"{shard:05d}{index:04d}"
                url = f"https://img{rng.integers(50)}.example.com/p/{key}-{rng.integers(1_000_000)}.jpg"
                caption = f"sample {key} photo"
                failed = failed_every > 0 and index % failed_every == failed_every - 1
                rows["url"].append(url)
                rows["caption"].append(caption)
                rows["key"].append(key)
                rows["status"].append("failed_to_download" if failed else "success")
                rows["error_message"].append("HTTP 404" if failed else None)
                if failed:
                    for name in ("width", "height", "original_width", "original_height",
                                 "sha256"):
                        rows[name].append(None)
                    continue
                data = jpeg_bytes(picture(rng, size))
                for name in ("width", "height", "original_width", "original_height"):
                    rows[name].append(size)
                rows["sha256"].append(hashlib.sha256(data).hexdigest())
                _add(tar, f"{key}.jpg", data)
                _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps({"url": url, "key": key,
                                                     "caption": caption}).encode())
        pq.write_table(pa.table({
            "url": pa.array(rows["url"], pa.string()),
            "caption": pa.array(rows["caption"], pa.string()),
            "key": pa.array(rows["key"], pa.string()),
            "status": pa.array(rows["status"], pa.string()),
            "error_message": pa.array(rows["error_message"], pa.string()),
            **{n: pa.array(rows[n], pa.int64()) for n in ("width", "height", "original_width",
                                                          "original_height")},
            "sha256": pa.array(rows["sha256"], pa.string()),
        }), folder / f"{shard:05d}.parquet")
    return folder
