"""Job state inside an output folder: identity, per-shard completion markers, temporary files.

Layout under ``OUTPUT/.scrub/``: ``job.json`` (what job this folder belongs to), ``done/NAME.json``
(one marker per completed shard, with its stats and the identity of the input it was made from)
and ``tmp/`` (partial files, renamed into place when complete). A rerun of the same job skips
shards whose marker matches the current input and output; anything else is recomputed, and since
the work is deterministic the bytes come out the same.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from scrub.atomic import atomic_write_json
from scrub.dataset import Shard
from scrub.engine.stats import ShardStats
from scrub.errors import OutputConflictError, UserInputError

STATE_DIR = ".scrub"


class JobState:
    """The resumable state of one job in its output folder."""

    def __init__(self, output: Path, job: dict[str, object]) -> None:
        self.output = output
        self.job = job
        self.root = output / STATE_DIR
        self.done_dir = self.root / "done"
        self.tmp_dir = self.root / "tmp"

    def prepare(self, *, force: bool) -> None:
        """Claim the output folder for this job, or refuse if it holds something else."""
        if self.output.exists() and not self.output.is_dir():
            raise UserInputError(f"{self.output}: exists and is not a folder")
        existing = self._existing_job()
        if existing is not None and existing != self.job:
            if not force:
                raise OutputConflictError(
                    f"{self.output}: holds the output of a different scrub job",
                    hint="choose another OUTPUT, or pass --force to replace it")
            shutil.rmtree(self.root)
        elif existing is None and self.output.is_dir() and any(self.output.iterdir()):
            if not force:
                raise OutputConflictError(
                    f"{self.output}: exists and is not empty",
                    hint="choose another OUTPUT, or pass --force to write into it")
        self.done_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)  # leftovers of an interrupted run
        self.tmp_dir.mkdir(parents=True)
        atomic_write_json(self.root / "job.json", self.job)

    def _existing_job(self) -> dict[str, object] | None:
        path = self.root / "job.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {"unreadable": True}

    def completed(self, shard: Shard) -> ShardStats | None:
        """The stats of a shard completed by this job from the current input, else None."""
        marker = self.done_dir / f"{shard.name}.json"
        if not marker.is_file():
            return None
        try:
            stats = ShardStats.from_json(json.loads(marker.read_text()))
        except (ValueError, TypeError):
            return None
        size, mtime = input_identity(shard)
        out = self.output / shard.name
        if stats.input_size != size or stats.input_mtime_ns != mtime or not out.is_file():
            return None
        if out.stat().st_size != stats.output_size:
            return None
        if stats.tar_output_size:  # a webdataset shard: its tar must be there too
            tar = out.with_suffix(".tar")
            if not tar.is_file() or tar.stat().st_size != stats.tar_output_size:
                return None
        return stats

    def commit(self, shard: Shard, tmp: Path, stats: ShardStats) -> None:
        """Move a finished (already fsynced) shard into place, then record it as done.

        The marker needs no fsync: lost or torn, it only makes a rerun redo the shard.
        """
        os.replace(tmp, self.output / shard.name)
        atomic_write_json(self.done_dir / f"{shard.name}.json", stats.to_json(), durable=False)


def input_identity(shard: Shard) -> tuple[int, int]:
    """(size, mtime in ns) of an input shard: a changed input invalidates its marker."""
    st = shard.path.stat()
    return st.st_size, st.st_mtime_ns
