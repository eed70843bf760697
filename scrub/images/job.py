"""``scrub hash``: the hashes of every image of webdataset tars or an image folder, as parquet.

One output per input shard (``NNNNN.tar`` -> ``NNNNN.parquet``; an image folder is cut into
chunks of ``FOLDER_CHUNK`` files, ``images-00000.parquet``...), one row per sample in input
order: ``key``, ``member`` (the image member or file), ``status`` (``ok``, ``undecodable``,
``too_large``, ``no_image``, ``duplicate_key``), ``error`` (a kind, never content), ``bytes``,
then the asked hashes (``pdq`` with ``pdq_quality``; ``pdq_dihedral`` with ``--dihedral``).
A ``.gz`` member (or one holding gzip data) is hashed as the image inside it, the bytes a
webdataset reader decodes; its ``member`` keeps the ``.gz`` name.
Shards run in parallel over processes; each output appears atomically with a completion marker,
so a rerun skips finished shards. A shard that cannot be read (a truncated tar) is reported by
name and the others are completed.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from scrub.atomic import atomic_path, atomic_write_json
from scrub.errors import (
    InvalidDatasetError,
    OutputConflictError,
    ScrubError,
    ShardsFailedError,
    StorageError,
    UserInputError,
    from_os_error,
)
from scrub.images.hashing import (
    DEFAULT_MAX_PIXELS,
    GZIP_MAGIC,
    OK,
    TOO_LARGE,
    UNDECODABLE,
    gunzip_layers,
    hash_image,
)
from scrub.images.tars import IMAGE_EXTENSIONS, group_samples, iter_image_bytes, read_members
from scrub.progress import Progress
from scrub.workers import exit_with_parent, worker_threads

FOLDER_CHUNK = 10_000
NO_IMAGE, DUPLICATE_KEY = "no_image", "duplicate_key"
STATE = ".scrub-hash"


@dataclass(frozen=True)
class HashShard:
    """A tar, or a chunk of an image folder (``files`` relative to ``root``)."""

    name: str
    tar: Path | None = None
    root: Path | None = None
    files: tuple[str, ...] = ()

    def identity(self) -> list[int]:
        paths = [self.tar] if self.tar else [self.root / f for f in self.files]  # type: ignore
        stats = [p.stat() for p in paths]
        return [len(stats), sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]


def discover(source: Path) -> list[HashShard]:
    """Tars (a folder of ``*.tar`` or one tar), else the images of a folder, in name order."""
    if source.is_file():
        if source.suffix != ".tar":
            raise UserInputError(f"{source}: expected a tar or a folder")
        return [HashShard(name=source.stem, tar=source)]
    if not source.is_dir():
        raise UserInputError(f"{source}: no such file or folder")
    tars = sorted(p for p in source.iterdir() if p.suffix == ".tar" and p.is_file())
    if tars:
        return [HashShard(name=p.stem, tar=p) for p in tars]
    images = sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                    if p.is_file() and p.suffix[1:].lower() in IMAGE_EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not images:
        endings = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserInputError(f"{source}: no tars and no images found",
                             hint=f"images are files ending in {endings}")
    return [HashShard(name=f"images-{i // FOLDER_CHUNK:05d}", root=source,
                      files=tuple(images[i: i + FOLDER_CHUNK]))
            for i in range(0, len(images), FOLDER_CHUNK)]


def hash_rows(shard: HashShard, types: Sequence[str], dihedral: bool,
              max_pixels: int) -> list[dict[str, object]]:
    """One row per sample of ``shard``."""
    rows: list[dict[str, object]] = []
    if shard.tar is not None:
        samples = group_samples(read_members(shard.tar))
        for sample, data in iter_image_bytes(shard.tar, samples):
            row: dict[str, object] = {"key": sample.key, "member": None, "bytes": None}
            if sample.repeated:
                row.update(status=DUPLICATE_KEY, error="key seen earlier in the tar")
            elif data is None:
                row.update(status=NO_IMAGE, error=None)
            else:
                row.update(member=sample.images[0].name, bytes=len(data))
                if sample.images[0].name.lower().endswith(".gz") or data[:2] == GZIP_MAGIC:
                    # what webdataset's decoder reads: the image inside the gzip layers
                    layers, problem = gunzip_layers(data)
                    if problem is not None:
                        row.update(status=TOO_LARGE if problem == TOO_LARGE else UNDECODABLE,
                                   error=problem)
                        rows.append(row)
                        continue
                    data = layers[-1] if layers else data
                row.update(hash_image(data, types, dihedral=dihedral, max_pixels=max_pixels))
                if len(sample.images) > 1 and row["status"] == OK:
                    row.update(status=DUPLICATE_KEY, error="several images for one key")
            rows.append(row)
        return rows
    for name in shard.files:
        path = shard.root / name  # type: ignore[operator]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidDatasetError(f"{path}: cannot read ({type(exc).__name__})") from exc
        row = {"key": name.rsplit(".", 1)[0], "member": name, "bytes": len(data)}
        row.update(hash_image(data, types, dihedral=dihedral, max_pixels=max_pixels))
        rows.append(row)
    return rows


def schema(types: Sequence[str], dihedral: bool) -> dict[str, pl.DataType]:
    columns: dict[str, pl.DataType] = {"key": pl.String(), "member": pl.String(),
                                       "status": pl.String(), "error": pl.String(),
                                       "bytes": pl.Int64()}
    for name in types:
        columns[name] = pl.String()
        if name == "pdq":
            columns["pdq_quality"] = pl.Int16()
    if dihedral:
        if "pdq" not in types:
            columns["pdq"] = pl.String()
            columns["pdq_quality"] = pl.Int16()
        columns["pdq_dihedral"] = pl.List(pl.String())
    return columns


def hash_shard(shard: HashShard, output: Path, types: Sequence[str], dihedral: bool,
               max_pixels: int) -> dict[str, object]:
    """Hash one shard into ``output/NAME.parquet`` atomically; its counts by status."""
    columns = schema(types, dihedral)
    rows = hash_rows(shard, types, dihedral, max_pixels)
    frame = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=columns,
                         orient="row")
    final = output / f"{shard.name}.parquet"
    encoded = io.BytesIO()  # small (a row per sample); written by Python, so a full disk
    frame.write_parquet(encoded, compression="zstd")  # is an OSError with its errno
    with atomic_path(final, tmp_dir=output / STATE / "tmp") as tmp:
        tmp.write_bytes(encoded.getbuffer())
    counts = dict(Counter(frame["status"].to_list()))
    marker = {"input": shard.identity(), "rows": frame.height, "by_status": counts,
              "output_size": final.stat().st_size}
    atomic_write_json(output / STATE / "done" / f"{shard.name}.json", marker, durable=False)
    return marker


def _task(args: tuple[HashShard, Path, tuple[str, ...], bool, int]) -> dict[str, object]:
    shard = args[0]
    try:
        return {"shard": shard.name, **hash_shard(*args)}
    except StorageError:
        raise  # a full disk fails every shard alike: stop the job (completed shards are kept)
    except ScrubError as exc:
        return {"shard": shard.name, "error": exc.message}
    except OSError as exc:
        full = from_os_error(exc, args[1] / f"{shard.name}.parquet")
        if isinstance(full, StorageError):
            raise full from None
        return {"shard": shard.name, "error": full.message if full is not None
                else f"internal error ({type(exc).__name__})"}
    except Exception as exc:  # internal: the type only, messages may hold content
        return {"shard": shard.name, "error": f"internal error ({type(exc).__name__})"}


def _completed(shard: HashShard, output: Path) -> dict | None:
    marker = output / STATE / "done" / f"{shard.name}.json"
    final = output / f"{shard.name}.parquet"
    try:
        done = json.loads(marker.read_text())
        if done["input"] == shard.identity() and final.stat().st_size == done["output_size"]:
            return done
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def hash_dataset(source: Path, output: Path, types: Sequence[str], *, dihedral: bool = False,
                 workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 force: bool = False, progress: bool = True) -> dict[str, object]:
    """Hash every shard of ``source`` into ``output``; the report (counts only)."""
    shards = discover(source)
    job = {"kind": "hash", "input": str(source.resolve()), "types": list(types),
           "dihedral": dihedral, "max_pixels": max_pixels}
    _claim(output, job, force)
    done = {s.name: m for s in shards if (m := _completed(s, output)) is not None}
    pending = [s for s in shards if s.name not in done]
    meter = Progress("hash", len(shards), None, enabled=progress)
    meter.resume(0, shards=len(done))
    results: list[dict[str, object]] = [{"shard": n, **m} for n, m in done.items()]
    tasks = [(s, output, tuple(types), dihedral, max_pixels) for s in pending]
    workers = max(1, min(workers or (os.cpu_count() or 1), len(tasks) or 1))
    try:
        if workers == 1:
            for task in tasks:
                results.append(_task(task))
                meter.advance(int(results[-1].get("rows", 0)))
        else:
            context = multiprocessing.get_context("spawn")
            with worker_threads(1), ProcessPoolExecutor(workers, mp_context=context,
                                                         initializer=exit_with_parent) as pool:
                for result in pool.map(_task, tasks):
                    results.append(result)
                    meter.advance(int(result.get("rows", 0)))
    finally:
        meter.finish()
    by_status: Counter[str] = Counter()
    for result in results:
        by_status.update(result.get("by_status", {}))
    failures = sorted((r["shard"], r["error"]) for r in results if "error" in r)
    report = {"input": str(source), "output": str(output), "types": list(types),
              "dihedral": dihedral, "shards": len(shards), "shards_failed": len(failures),
              "samples": sum(int(r.get("rows", 0)) for r in results),
              "by_status": dict(sorted(by_status.items()))}
    atomic_write_json(output / "hash-report.json", report)
    if failures:
        raise ShardsFailedError(failures, len(shards))
    return report


def _claim(output: Path, job: dict[str, object], force: bool) -> None:
    state = output / STATE
    job_file = state / "job.json"
    if job_file.is_file():
        try:
            existing = json.loads(job_file.read_text())
        except ValueError:
            existing = None
        if existing != job:
            if not force:
                raise OutputConflictError(f"{output}: holds the output of a different job",
                                          hint="choose another OUTPUT or pass --force")
            for marker in (state / "done").glob("*.json"):
                marker.unlink()
    elif output.is_dir() and any(output.iterdir()) and not force:
        raise OutputConflictError(f"{output}: exists and is not empty",
                                  hint="choose another OUTPUT or pass --force")
    (state / "done").mkdir(parents=True, exist_ok=True)
    atomic_write_json(job_file, job)
