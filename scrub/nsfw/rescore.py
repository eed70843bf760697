"""Rescoring ``punsafe`` from CLIP embeddings, shard by shard.

Embeddings come in clip-retrieval's layout (``img_emb/img_emb_{i}.npy``, float16, row ``r`` of
file ``i`` is row ``r`` of the shard whose name ends in ``i``) or as a list column; they are
memory-mapped and streamed in large batches (CUDA: half precision; CPU: float32). The output
holds one parquet per input shard, same name: float32 ``punsafe`` row-aligned with the shard
(null where the embedding is not finite), ``key`` when the shard has one, and the model id in
its metadata. Each file appears atomically and is its own completion marker, so a rerun skips
shards scored by this model. Shards are units of a task on :mod:`scrub.runtime`.
Rationale: docs/design/nsfw.md.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from scrub.atomic import atomic_path
from scrub.dataset import Shard, discover_shards, open_shard
from scrub.errors import InvalidDatasetError, UserInputError
from scrub.nsfw.head import LoadedHead, NsfwHead
from scrub.nsfw.object_arrays import ObjectArray
from scrub.progress import Progress
from scrub.runtime import Outcome, open_executor, run_units, split_done
from scrub.storage import ObjectPath, location

MODEL_KEY = b"scrub.nsfw.model"
ROWS_KEY = b"scrub.nsfw.rows"
KEY_COLUMNS = ("key", "SAMPLE_ID", "uid")
#: Rows per forward pass on CPU (a batch is split into passes of this size).
CPU_PASS = 8_192
#: A shard's embeddings: an array (memory-mapped for a local .npy file) or a .npy file in
#: object storage read by rows.
Embeddings = np.ndarray | ObjectArray


@dataclass
class RescoreReport:
    shards: int = 0
    skipped: int = 0
    rows: int = 0
    scored: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, counts: Mapping[str, Any]) -> None:
        """Add another report's counts (as ``asdict`` gives them, e.g. from a Ray task)."""
        for name in ("shards", "skipped", "rows", "scored"):
            setattr(self, name, getattr(self, name) + counts.get(name, 0))
        for status, n in counts["statuses"].items():
            self.statuses[status] = self.statuses.get(status, 0) + n


def ray_gpus(device: torch.device, auto_device: bool, *, address: str | None = None,
             workers: int | None = None) -> int:
    """GPUs each Ray task takes (0 or 1): 1 when ``device`` is CUDA, or for ``auto_device``
    when the cluster has GPUs (the driver may have none). Joins the cluster first."""
    from scrub.runtime import cluster_gpus, connect

    connect(address, num_cpus=workers)
    gpus = cluster_gpus()
    if device.type == "cuda" and gpus == 0:
        raise UserInputError("--device cuda: the Ray cluster has no GPU")
    return 1 if device.type == "cuda" or (auto_device and gpus > 0) else 0


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without it is a user error with a hint."""
    if device not in ("auto", "cuda", "cpu"):
        raise UserInputError(f"--device {device!r}: choose auto, cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda: no CUDA device is available here",
                             hint="use --device cpu (or auto), or check the driver and "
                             "torch's CUDA build")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def embedding_file(root: Path | ObjectPath, shard: Shard) -> Path | ObjectPath:
    """The clip-retrieval embedding file of a shard: ``img_emb/img_emb_{i}.npy`` where ``i``
    is the number the shard's name ends with."""
    match = re.search(r"(\d+)$", shard.path.stem)
    if match is None:
        raise InvalidDatasetError(f"{shard.path}: the name does not end in a shard number, so "
                                  "no img_emb file can be matched to it")
    return root / "img_emb" / f"img_emb_{int(match.group(1))}.npy"


@dataclass(frozen=True)
class ScoreUnit:
    """One shard to score: its scores go to ``target`` (``rows`` rows)."""

    shard: Shard
    target: Path | ObjectPath
    rows: int


def rescore(source: str | Path | ObjectPath, output: str | Path | ObjectPath, loaded: LoadedHead,
            *, device: torch.device,
            batch_size: int = 65_536, embedding_column: str | None = None,
            progress: bool = True, engine: str = "local", address: str | None = None,
            workers: int | None = None, auto_device: bool = False) -> RescoreReport:
    """Score every shard of ``source`` into ``output`` (``engine="ray"``: one shard per Ray
    task, on GPUs for CUDA, or for ``auto_device`` when the cluster has GPUs). Either
    location may lie in object storage (embedding files are then read by rows with ranged
    requests, :mod:`scrub.nsfw.object_arrays`)."""
    source, output = location(source), location(output)
    if output.resolve() == source.resolve():
        raise UserInputError("OUTPUT must not be the input folder")
    metadata_dir = source / "metadata" if (source / "metadata").is_dir() else source
    shards = discover_shards(metadata_dir)
    model_id = loaded.model_id
    report = RescoreReport()
    units = [ScoreUnit(s, output / s.name, open_shard(s).metadata.num_rows) for s in shards]
    meter = Progress("rescore", len(shards), sum(u.rows for u in units), enabled=progress)
    done, pending = split_done(units, lambda u: _done(u.target, model_id, u.rows) or None)
    report.skipped = len(done)
    meter.resume(sum(u.rows for u, _ in done), shards=len(done))
    dim = loaded.head.arch.dim
    for unit in pending:  # every shard checked before any work
        _embeddings(source, unit.shard, open_shard(unit.shard), unit.rows, embedding_column, dim)
    output.mkdir(parents=True, exist_ok=True)  # only once every shard checked out
    payload = {"head": loaded.head, "model_id": model_id, "batch_size": batch_size,
               "source": source, "column": embedding_column, "device": str(device)}
    gpus = 0.0
    if engine == "ray":
        gpus = float(ray_gpus(device, auto_device, address=address, workers=workers))
        payload.update(head=loaded.head.cpu(), device="cuda" if gpus else "cpu")
    with open_executor(engine, workers=workers if engine == "ray" else 1, address=address,
                       num_gpus=gpus) as executor:  # locally one process holds the device
        executor.load(setup, payload)
        outcomes = run_units(executor, pending, meter=meter, rows=lambda o: o.unit.rows)
    _gather(report, outcomes)
    return report


def _gather(report: RescoreReport, outcomes: list[Outcome[Any]]) -> None:
    """Add the shards' counts to ``report``; the first failed shard's error is raised."""
    for outcome in outcomes:
        if outcome.failed:
            raise outcome.exception()
        report.add(outcome.result)


def setup(payload: Mapping[str, Any]) -> Callable[[ScoreUnit], dict[str, Any]]:
    """The rescore task: the head on the payload's device, then one shard per call."""
    device = torch.device(payload["device"])
    precision = torch.float16 if device.type == "cuda" else torch.float32
    head = payload["head"].to(device)
    head = head.to(precision) if precision != torch.float32 else head

    def run(unit: ScoreUnit) -> dict[str, Any]:
        embeddings = _embeddings(payload["source"], unit.shard, open_shard(unit.shard),
                                 unit.rows, payload["column"], head.arch.dim)
        counts = RescoreReport()
        score_jobs(head, [(unit.shard, unit.target, unit.rows, embeddings)], device, precision,
                   payload["batch_size"], payload["model_id"], counts)
        return asdict(counts)

    return run


def score_jobs(head: NsfwHead, jobs: list[tuple[Shard, Path | ObjectPath, int, Embeddings]],
               device: torch.device, precision: torch.dtype, batch_size: int, model_id: str,
               report: RescoreReport, meter: Progress | None = None) -> None:
    """Score and write every job's shard (batches never span shards, so a shard's scores are
    the same whichever jobs it is scored with)."""
    reads = [(j, start, min(batch_size, rows - start))
             for j, (_, _, rows, _) in enumerate(jobs) for start in range(0, rows, batch_size)]
    scores = finite = np.empty(0)
    current = -1
    batches = _batches(jobs, reads, to_float32=device.type == "cpu")
    for j, start, values, ok in _score(head, batches, device, precision):
        if j != current:
            for empty in range(current + 1, j):  # shards of no rows
                _write(jobs[empty], np.empty(0, np.float32), np.ones(0, bool), model_id, report)
            if current >= 0:
                _write(jobs[current], scores, finite, model_id, report)
                if meter is not None:
                    meter.advance(jobs[current][2])
            current, rows = j, jobs[j][2]
            scores, finite = np.empty(rows, dtype=np.float32), np.ones(rows, dtype=bool)
        scores[start:start + len(values)] = values
        finite[start:start + len(values)] = ok
    if current >= 0:
        _write(jobs[current], scores, finite, model_id, report)
        if meter is not None:
            meter.advance(jobs[current][2])
    for empty in range(current + 1, len(jobs)):
        _write(jobs[empty], np.empty(0, np.float32), np.ones(0, bool), model_id, report)


def _write(job: tuple[Shard, Path | ObjectPath, int, Embeddings], scores: np.ndarray,
           finite: np.ndarray,
           model_id: str, report: RescoreReport) -> None:
    """One shard's scores, atomically, with its keys and the model id in the metadata."""
    shard, target, rows, _ = job
    bad = int((~finite).sum())
    if bad:
        report.statuses["nonfinite_embedding"] = (
            report.statuses.get("nonfinite_embedding", 0) + bad)
    columns = {"punsafe": pa.array(scores, type=pa.float32(), mask=~finite)}
    keys = _keys(open_shard(shard))
    if keys is not None:
        columns = {"key": keys, **columns}
    table = pa.table(columns).replace_schema_metadata(
        {MODEL_KEY: model_id.encode(), ROWS_KEY: str(rows).encode()})
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    report.shards += 1
    report.rows += rows
    report.scored += rows - bad


def _done(target: Path | ObjectPath, model_id: str, rows: int) -> bool:
    """Whether ``target`` holds the scores of ``rows`` rows by ``model_id`` (its metadata)."""
    if not target.is_file():
        return False
    try:
        if isinstance(target, ObjectPath):
            with target.open("rb") as handle:
                metadata = pq.read_schema(handle).metadata or {}
        else:
            metadata = pq.read_schema(target).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return (metadata.get(MODEL_KEY) == model_id.encode()
            and metadata.get(ROWS_KEY) == str(rows).encode())


def _keys(parquet: pq.ParquetFile) -> pa.ChunkedArray | None:
    names = parquet.schema_arrow.names
    column = next((c for c in KEY_COLUMNS if c in names), None)
    return None if column is None else parquet.read(columns=[column]).column(0)


def _embeddings(source: Path | ObjectPath, shard: Shard, parquet: pq.ParquetFile, rows: int,
                column: str | None, dim: int) -> Embeddings:
    """The shard's embeddings as an (rows, dim) array (memory-mapped for local .npy files,
    read by rows with ranged requests for .npy files in object storage)."""
    if column is not None:
        if column not in parquet.schema_arrow.names:
            raise InvalidDatasetError(f"{shard.path}: no column {column!r}")
        values = parquet.read(columns=[column]).column(0).combine_chunks()
        if not (pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type)
                or pa.types.is_large_list(values.type)):
            raise InvalidDatasetError(f"{shard.path}: column {column!r} is {values.type}, "
                                      "not a list of floats")
        lengths = values.value_lengths().to_numpy(zero_copy_only=False)
        if values.null_count or (len(lengths) and (lengths != dim).any()):
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False)
                                     | (lengths != dim))[0])
            raise InvalidDatasetError(f"{shard.path}: row {row} of column {column!r} is not a "
                                      f"{dim}-value embedding")
        flat = values.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(rows, dim)
    path = embedding_file(source, shard)
    try:
        array: Embeddings = (ObjectArray(path) if isinstance(path, ObjectPath)
                             else np.load(path, mmap_mode="r", allow_pickle=False))
    except FileNotFoundError:
        raise InvalidDatasetError(f"{shard.path}: no embeddings at {path}",
                                  hint="clip-retrieval's layout is img_emb/img_emb_{i}.npy; "
                                  "or name a list column with --embedding-column") from None
    except (OSError, ValueError) as exc:
        raise InvalidDatasetError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim != 2 or array.shape[1] != dim:
        raise InvalidDatasetError(f"{path}: shape {array.shape}, the head needs (rows, {dim})")
    if array.shape[0] != rows:
        raise InvalidDatasetError(f"{path} holds {array.shape[0]} embeddings but {shard.path} "
                                  f"has {rows} rows: they are not row-aligned")
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidDatasetError(f"{path}: dtype {array.dtype}, expected float16 or float32")
    return array


def _read_rows(array: Embeddings, start: int, count: int) -> np.ndarray:
    """Rows of an embedding matrix as a new, writable array: a memory-mapped .npy file is read
    with one sequential ``readinto`` (cheaper than faulting its pages in one by one), one in
    object storage with one ranged read."""
    if isinstance(array, ObjectArray):
        return array.rows(start, count)
    if isinstance(array, np.memmap) and array.filename is not None \
            and array.flags.c_contiguous:
        out = np.empty((count, array.shape[1]), dtype=array.dtype)
        with open(array.filename, "rb", buffering=0) as handle:
            handle.seek(array.offset + start * array.strides[0])
            view = out.data.cast("B")
            done = 0
            while done < len(view):
                got = handle.readinto(view[done:])
                if not got:
                    raise InvalidDatasetError(f"{array.filename}: ends early (truncated file)")
                done += got
        return out
    return np.array(array[start:start + count])


def _batches(jobs: list[tuple[Shard, Path | ObjectPath, int, Embeddings]],
             reads: list[tuple[int, int, int]],
             *, to_float32: bool) -> Iterator[tuple[int, int, np.ndarray]]:
    """(job, start, rows) for every read, across shards, the next one read (and converted to
    float32 when ``to_float32``) by a helper thread while this one is scored."""
    def load(embeddings: Embeddings, start: int, count: int) -> np.ndarray:
        if not to_float32:
            return _read_rows(embeddings, start, count)
        # One pass reads the mapped pages and converts them (torch converts float16 faster
        # than numpy, and releases the GIL); torch only warns that the mapped rows are
        # read-only, which is all they are used as.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rows = torch.from_numpy(np.asarray(embeddings[start:start + count]))
            converted = rows.to(torch.float32)
        return (converted.clone() if converted is rows else converted).numpy()

    if not reads:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="scrub-read") as reader:
        def fetch(i: int) -> Future[np.ndarray]:
            j, start, count = reads[i]
            return reader.submit(load, jobs[j][3], start, count)

        ahead = fetch(0)
        for i, (j, start, _) in enumerate(reads):
            chunk = ahead.result()
            if i + 1 < len(reads):
                ahead = fetch(i + 1)
            yield j, start, chunk


def _score(head: NsfwHead, batches: Iterator[tuple[int, int, np.ndarray]],
           device: torch.device, precision: torch.dtype
           ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(job, start, scores, finite) per batch (``finite`` False: the row holds NaN or infinity).
    On CUDA, batch k+1 is copied (pinned memory, its own stream) while
    batch k is computed."""
    if device.type != "cuda":
        yield from _score_cpu(head, batches)
        return
    with torch.inference_mode():
        copy_stream = torch.cuda.Stream(device)
        compute_stream = torch.cuda.current_stream(device)
        pending = None
        for job, start, chunk in batches:
            host = torch.from_numpy(chunk).pin_memory()
            with torch.cuda.stream(copy_stream):
                on_device = host.to(device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(copy_stream)
            if pending is not None:
                yield _finish(head, *pending, compute_stream, precision)
            pending = (job, start, on_device, ready, host)
        if pending is not None:
            yield _finish(head, *pending, compute_stream, precision)


def _score_cpu(head: NsfwHead, batches: Iterator[tuple[int, int, np.ndarray]]
               ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """The CPU path: every pass of ``CPU_PASS`` rows (a batch's rows from its first) runs on one
    thread, passes in parallel over the cores.

    A CPU matrix product's rounding depends on how many threads split it, so each pass (fixed
    rows: batches start at fixed rows of a shard) runs single-threaded and passes run side by
    side (torch releases the GIL): a shard's scores are the same bytes whatever the executor or
    the core count. Measurement: docs/design/nsfw.md.
    """
    threads = torch.get_num_threads()

    def one(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():  # thread-local, so entered in each worker thread
            return head.score(part)

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="scrub-score") as pool:
            for job, start, chunk in batches:
                # cache-sized passes: 64k x 512 activations would not stay in cache
                parts = list(pool.map(one, torch.from_numpy(chunk).split(CPU_PASS)))
                yield (job, start, torch.cat([p[0] for p in parts]).numpy(),
                       torch.cat([p[1] for p in parts]).numpy())
    finally:
        torch.set_num_threads(threads)


def _finish(head: NsfwHead, job: int, start: int, on_device: torch.Tensor,
            ready: torch.cuda.Event,
            host: torch.Tensor, stream: torch.cuda.Stream,
            precision: torch.dtype) -> tuple[int, int, np.ndarray, np.ndarray]:
    stream.wait_event(ready)
    on_device.record_stream(stream)  # the copy stream's allocation is used here
    scores, ok = head.score(on_device.to(precision))
    result = scores.float().cpu().numpy(), ok.cpu().numpy()
    del host  # the pinned buffer may go once its copy is done (the scores are back)
    return job, start, *result
