"""``scrub hash``: the hashes of every image of webdataset tars or an image folder, as parquet.

One output per input shard (``NNNNN.tar`` -> ``NNNNN.parquet``; an image folder in chunks of
``FOLDER_CHUNK`` files, ``images-00000.parquet``...), one row per sample in input order: ``key``,
``member``, ``status`` (``ok``, ``undecodable``, ``too_large``, ``no_image``, ``duplicate_key``),
``error`` (a kind, never content), ``bytes``, then the asked hashes (``pdq`` with
``pdq_quality``; ``pdq_dihedral`` with ``--dihedral``). A ``.gz`` member is hashed as the image
inside it (what a webdataset reader decodes) and keeps its ``.gz`` name. Shards are units of a
task on :mod:`scrub.runtime` (resume, markers and ``hash-report.json`` in ``OUTPUT.scrub/``); an
unreadable shard is reported by name and the others are completed.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

import polars as pl

from scrub.atomic import atomic_path, atomic_write_json, remove_tree
from scrub.errors import InvalidDatasetError, ShardsFailedError, UserInputError, from_os_error
from scrub.images.hashing import (
    DEFAULT_MAX_PIXELS,
    GZIP_MAGIC,
    OK,
    TOO_LARGE,
    UNDECODABLE,
    gunzip_layers,
    hash_image,
)
from scrub.images.spool import local_tar
from scrub.images.tars import IMAGE_EXTENSIONS, group_samples, iter_image_bytes, read_members
from scrub.progress import Progress
from scrub.runtime import (
    JobState,
    Outcome,
    default_workers,
    has_size,
    job_identity,
    open_executor,
    run_units,
    split_done,
)
from scrub.storage import ObjectPath, ObjectStat, filesystems, location

FOLDER_CHUNK = 10_000
NO_IMAGE, DUPLICATE_KEY = "no_image", "duplicate_key"
REPORT_NAME = "hash-report.json"
#: Where scrub before the runtime kept a hash job's state and report: inside OUTPUT.
LEGACY_STATE = ".scrub-hash"


class HashSettings(TypedDict):
    """What a hash job computes (part of its identity)."""

    types: list[str]
    dihedral: bool
    max_pixels: int


class HashReport(TypedDict):
    """The hash report (``hash-report.json``, counts only)."""

    input: str
    output: str
    types: list[str]
    dihedral: bool
    shards: int
    shards_failed: int
    samples: int
    by_status: dict[str, int]


@dataclass(frozen=True)
class HashShard:
    """A tar, or a chunk of an image folder (``files`` relative to ``root``)."""

    name: str
    tar: Path | ObjectPath | None = None
    root: Path | ObjectPath | None = None
    files: tuple[str, ...] = ()

    @property
    def output_name(self) -> str:
        return f"{self.name}.parquet"

    @property
    def folder(self) -> Path | ObjectPath:
        """The image folder of a folder chunk (``files`` are relative to it)."""
        if self.root is None:
            raise ValueError(f"shard {self.name}: a tar, not a folder chunk")
        return self.root

    def identity(self) -> list[int | str | None]:
        """(files, bytes, latest mtime) of the input: a changed input invalidates a marker. A
        tar in object storage adds its ETag (Last-Modified has whole seconds: an object
        rewritten within the second would look unchanged)."""
        stats: Sequence[os.stat_result | ObjectStat]
        if isinstance(self.tar, ObjectPath):
            stat = self.tar.stat()
            return [1, stat.st_size, stat.st_mtime_ns, self.tar.etag()]
        if self.tar is not None:
            stats = [self.tar.stat()]
        elif isinstance(self.root, ObjectPath):  # one listing, not a request per image
            stats = _listed(self.root, self.files)
        else:
            stats = [(self.folder / f).stat() for f in self.files]
        return [len(stats), sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)]


def _listed(root: ObjectPath, files: Sequence[str]) -> list[ObjectStat]:
    """What one listing of ``root`` tells of ``files`` (paths relative to it)."""
    skip = len(root.key) + 1 if root.key else 0
    found = {info.path.partition("/")[2][skip:]: info
             for info in filesystems.listing(root, recursive=True)}
    stats = []
    for name in files:
        info = found.get(name)
        if info is None:
            raise FileNotFoundError(2, "no such object", str(root / name))
        stats.append(ObjectStat(int(info.size or 0), int(info.mtime_ns or 0)))
    return stats


def discover(source: Path | ObjectPath) -> list[HashShard]:
    """Tars (a folder of ``*.tar`` or one tar), else the images of a folder, in name order (a
    folder may be a prefix in object storage)."""
    if source.is_file():
        if source.suffix != ".tar":
            raise UserInputError(f"{source}: expected a tar or a folder")
        return [HashShard(name=source.stem, tar=source)]
    if not source.is_dir():
        raise UserInputError(f"{source}: no such file or folder")
    tars = sorted(p for p in source.iterdir() if p.suffix == ".tar" and p.is_file())
    if tars:
        return [HashShard(name=p.stem, tar=p) for p in tars]
    images = sorted(name for name in _files_under(source)
                    if PurePosixPath(name).suffix[1:].lower() in IMAGE_EXTENSIONS
                    and not any(part.startswith(".") for part in name.split("/")))
    if not images:
        endings = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserInputError(f"{source}: no tars and no images found",
                             hint=f"images are files ending in {endings}")
    return [HashShard(name=f"images-{i // FOLDER_CHUNK:05d}", root=source,
                      files=tuple(images[i: i + FOLDER_CHUNK]))
            for i in range(0, len(images), FOLDER_CHUNK)]


def _files_under(folder: Path | ObjectPath) -> list[str]:
    """The files at any depth under ``folder``, as paths relative to it."""
    if isinstance(folder, ObjectPath):
        skip = len(folder.key) + 1 if folder.key else 0
        return [path.key[skip:] for path, _ in folder.walk_files()]
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]


def hash_rows(shard: HashShard, types: Sequence[str], dihedral: bool, max_pixels: int, *,
              folder: Path | None = None) -> list[dict[str, object]]:
    """One row per sample of ``shard`` (a tar in object storage is read through a local copy
    in ``folder``, see :mod:`scrub.images.spool`)."""
    if shard.tar is not None:
        with local_tar(shard.tar, folder) as tar:
            return _tar_rows(tar, types, dihedral, max_pixels)
    rows: list[dict[str, object]] = []
    for name in shard.files:
        path = shard.folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidDatasetError(f"{path}: cannot read ({type(exc).__name__})") from exc
        row: dict[str, object] = {"key": name.rsplit(".", 1)[0], "member": name,
                                  "bytes": len(data)}
        row.update(hash_image(data, types, dihedral=dihedral, max_pixels=max_pixels))
        rows.append(row)
    return rows


def _tar_rows(tar: Path, types: Sequence[str], dihedral: bool,
              max_pixels: int) -> list[dict[str, object]]:
    """One row per sample of a local tar."""
    rows: list[dict[str, object]] = []
    samples = group_samples(read_members(tar))
    for sample, data in iter_image_bytes(tar, samples):
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


def hash_shard(shard: HashShard, state: JobState, types: Sequence[str], dihedral: bool,
               max_pixels: int) -> dict[str, object]:
    """Hash one shard into ``OUTPUT/NAME.parquet`` atomically and record it done; its marker
    (input identity, rows, counts by status, output size)."""
    columns = schema(types, dihedral)
    rows = hash_rows(shard, types, dihedral, max_pixels, folder=state.tmp_dir)
    frame = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=columns,
                         orient="row")
    final = state.output / shard.output_name
    encoded = io.BytesIO()  # small (a row per sample); written by Python, so a full disk
    frame.write_parquet(encoded, compression="zstd")  # is an OSError with its errno
    with atomic_path(final, tmp_dir=state.tmp_dir) as tmp:
        tmp.write_bytes(encoded.getbuffer())
    counts = dict(Counter(frame["status"].to_list()))
    marker = {"input": shard.identity(), "rows": frame.height, "by_status": counts,
              "output_size": final.stat().st_size}
    state.commit(shard.output_name, [], marker)
    return marker


def setup(payload: Mapping[str, Any]) -> Callable[[HashShard], dict[str, object]]:
    """The hash task: ``payload`` holds the job state and the hashing settings."""
    state: JobState = payload["state"]
    settings = (tuple(payload["types"]), bool(payload["dihedral"]), int(payload["max_pixels"]))

    def run(shard: HashShard) -> dict[str, object]:
        try:
            return hash_shard(shard, state, *settings)
        except OSError as exc:  # named by the file it was writing; a full disk stops the run
            full = from_os_error(exc, state.output / shard.output_name)
            if full is None:
                raise
            raise full from None

    return run


def _completed(state: JobState, shard: HashShard) -> dict[str, Any] | None:
    return state.completed(shard.output_name, lambda marker: (
        marker["input"] == shard.identity()
        and has_size(state.output / shard.output_name, marker["output_size"])))


def hash_dataset(source: str | Path | ObjectPath, output: str | Path | ObjectPath,
                 types: Sequence[str], *, dihedral: bool = False, workers: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, force: bool = False,
                 progress: bool = True, engine: str = "local",
                 address: str | None = None) -> HashReport:
    """Hash every shard of ``source`` into ``output`` (either may be a location in object
    storage); the report (counts only), also written to ``OUTPUT.scrub/hash-report.json``.
    ``engine="ray"``: a Ray task per shard."""
    source, output = location(source), location(output)
    shards = discover(source)
    settings: HashSettings = {"types": list(types), "dihedral": dihedral,
                              "max_pixels": max_pixels}
    state = JobState(output, job_identity("hash", {"input": str(source.resolve()),
                                                   **settings}))
    if force and (output / LEGACY_STATE).is_dir():  # an older scrub's state, inside OUTPUT
        remove_tree(output / LEGACY_STATE)
        (output / REPORT_NAME).unlink(missing_ok=True)
    state.prepare(force=force, shards=[s.output_name for s in shards])
    done, pending = split_done(shards, lambda shard: _completed(state, shard))
    meter = Progress("hash", len(shards), None, enabled=progress)
    meter.resume(0, shards=len(done))
    count = workers if engine == "ray" else min(workers or default_workers(), len(pending) or 1)
    with open_executor(engine, workers=count, address=address) as executor:
        executor.load(setup, {"state": state, **settings})
        outcomes = run_units(executor, pending, meter=meter,
                             rows=lambda o: int(o.result["rows"]) if o.result else 0)
    return _report(state, source, output, settings, done, outcomes, len(shards))


def _report(state: JobState, source: Path | ObjectPath, output: Path | ObjectPath,
            settings: HashSettings,
            done: list[tuple[HashShard, dict[str, Any]]], outcomes: list[Outcome[HashShard]],
            total: int) -> HashReport:
    """Write the report; raise ShardsFailedError (after writing it) when shards failed."""
    markers = [m for _, m in done] + [o.result for o in outcomes if o.result is not None]
    by_status: Counter[str] = Counter()
    for marker in markers:
        by_status.update(marker.get("by_status", {}))
    failures = sorted((o.unit.name, o.error or "") for o in outcomes if o.failed)
    report: HashReport = {
        "input": str(source), "output": str(output), "types": settings["types"],
        "dihedral": settings["dihedral"], "shards": total, "shards_failed": len(failures),
        "samples": sum(int(m["rows"]) for m in markers),
        "by_status": dict(sorted(by_status.items()))}
    atomic_write_json(state.root / REPORT_NAME, report)
    if failures:
        raise ShardsFailedError(failures, total)
    state.finish()
    return report
