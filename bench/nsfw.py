"""Benchmark: NSFW rescoring from clip-retrieval embeddings.

Generates (and caches under ``bench/.cache``) LAION-like shards with float16 ViT-L/14-sized
embeddings (``img_emb/img_emb_{i}.npy``) and a random-weight head, then measures, in the same
process and run:

- the bare head forward pass over the same embeddings already in memory, as stored (float16,
  converted pass by pass: the baseline; no reading, no alignment checks, no output), and also
  over a copy converted to float32 ahead of time, for reference;
- :func:`scrub.nsfw.rescore.rescore` from the files: reading, alignment checks, NaN handling,
  scoring and writing one parquet per shard (target: >= 0.8x the baseline's rows/s on CPU).

On a machine with CUDA it also times the GPU path and checks that CPU and GPU scores agree
within 1e-3.

Usage: ``python bench/nsfw.py [--rows 2000000] [--shards 4] [--repeat 3] [--device cpu]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from scrub.nsfw.head import load_head, random_head, save_head  # noqa: E402
from scrub.nsfw.rescore import CPU_PASS, rescore  # noqa: E402
from scrub.synthetic import generate_dataset  # noqa: E402

CACHE = ROOT / ".cache"


def dataset(rows: int, shards: int) -> Path:
    path = CACHE / f"nsfw-{rows}-{shards}"
    if not (path / "img_emb").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        generate_dataset(path, rows=rows, shards=shards, seed=5, embeddings=True)
    return path


def bare(head: torch.nn.Module, tensors: list[torch.Tensor], device: torch.device,
         step: int, dtype: torch.dtype) -> float:
    rows = sum(len(t) for t in tensors)
    with torch.inference_mode():
        start = time.perf_counter()
        for tensor in tensors:
            for part in tensor.split(step):
                head(part.to(dtype))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = dataset(args.rows, args.shards)
    weights = CACHE / "nsfw-head.safetensors"
    save_head(random_head("vit-l-14", seed=1), weights)
    loaded = load_head(weights)
    device = torch.device(args.device)
    files = sorted((data / "img_emb").glob("*.npy"))
    # the embeddings as stored (float16), and converted once to float32 ahead of time
    stored = [torch.from_numpy(np.load(f)).to(device) for f in files]
    converted = [t.float() for t in stored] if device.type == "cpu" else stored
    head = loaded.head.to(device)
    dtype = torch.float32
    if device.type == "cuda":
        head, dtype = head.half(), torch.float16
    steps = (CPU_PASS,) if device.type == "cpu" else (65_536, 262_144)
    base, base32, ours = [], [], []
    out = CACHE / "nsfw-out"
    for _ in range(args.repeat):
        base.append(max(bare(head, stored, device, step, dtype) for step in steps))
        base32.append(max(bare(head, converted, device, step, dtype) for step in steps))
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        report = rescore(data, out, loaded, device=device, progress=False)
        ours.append(report.rows / (time.perf_counter() - start))
    b, b32, o = statistics.median(base), statistics.median(base32), statistics.median(ours)
    print(f"{args.rows:,} rows, {args.shards} shards, ViT-L/14 head, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeat}")
    print(f"  bare forward, float16 embeddings in memory (baseline): {b:,.0f} rows/s")
    print(f"  bare forward, already converted to float32:            {b32:,.0f} rows/s")
    print(f"  scrub rescore from files to parquet:                   {o:,.0f} rows/s")
    print(f"  ratio {o / b:.2f}x the baseline (target >= 0.8x); {o / b32:.2f}x the float32 one")
    if device.type == "cuda":
        cpu_out = CACHE / "nsfw-out-cpu"
        shutil.rmtree(cpu_out, ignore_errors=True)
        rescore(data, cpu_out, load_head(weights), device=torch.device("cpu"), progress=False)
        worst = max(float(np.nanmax(np.abs(
            pq.read_table(out / p.name)["punsafe"].to_numpy(zero_copy_only=False)
            - pq.read_table(p)["punsafe"].to_numpy(zero_copy_only=False))))
            for p in sorted(cpu_out.glob("*.parquet")))
        print(f"  CPU vs GPU scores: max |difference| {worst:.2e} (target <= 1e-3)")


if __name__ == "__main__":
    main()
