"""Job state of an output folder: identity, per-shard completion markers, temporary files.

The state lies in OUTPUT's companion folder ``OUTPUT.scrub/`` (:mod:`scrub.layout`), so that
a finished OUTPUT holds its shards only: ``job.json`` (what job OUTPUT belongs to) and
``done/NAME.json`` (one marker per completed shard, with its stats and the identity of the input
it was made from). Partial files are written in ``OUTPUT/.scrub-tmp/``, on OUTPUT's own file
system (OUTPUT may be a mount point), renamed into place when complete; the folder goes when
the job completes. A rerun of the same job skips shards whose marker matches the current input
and output; anything else is recomputed, and since the work is deterministic the bytes come out
the same. Older scrubs kept the state in ``OUTPUT/.scrub/`` (:data:`LEGACY_STATE_DIR`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from scrub.atomic import atomic_write_json
from scrub.dataset import Shard
from scrub.engine.stats import ShardStats
from scrub.errors import OutputConflictError, UserInputError
from scrub.layout import companion

#: Where scrub before the companion folders kept a job's state: inside OUTPUT.
LEGACY_STATE_DIR = ".scrub"
#: Partial files of a running job, inside OUTPUT (a rename never crosses file systems).
TMP_DIR = ".scrub-tmp"


class JobState:
    """The resumable state of one job in its output folder."""

    def __init__(self, output: Path, job: dict[str, object]) -> None:
        self.output = output
        self.job = job
        self.root = companion(output)
        self.done_dir = self.root / "done"
        self.tmp_dir = output / TMP_DIR
        #: Whether :meth:`prepare` removed the state an older scrub kept inside OUTPUT.
        self.replaced_legacy = False

    def prepare(self, *, force: bool, shards: Iterable[str] = ()) -> None:
        """Claim the output folder (and its companion) for this job, or refuse if they hold
        something else.

        ``shards`` names this job's output shards. OUTPUT must end up holding those and no other
        parquet file, since readers take every one as rows: shards an earlier job recorded (a
        replaced job under ``--force``, or this job's shards whose input shard is gone) are
        removed with their markers; a parquet file no scrub job recorded is refused, even with
        ``--force``."""
        for folder in (self.output, self.root):
            if folder.exists() and not folder.is_dir():
                raise UserInputError(f"{folder}: exists and is not a folder")
        existing = self._existing_job()
        legacy = self.output / LEGACY_STATE_DIR
        if existing is None and (legacy / "job.json").is_file():
            if not force:
                raise OutputConflictError(
                    f"{self.output}: holds the output of an older scrub (its state inside it, "
                    f"in {LEGACY_STATE_DIR}/)",
                    hint="choose another OUTPUT, or pass --force to replace it")
            self._remove_outputs(_recorded(legacy / "done"))
            shutil.rmtree(legacy)
            self.replaced_legacy = True
        if existing is not None and existing != self.job:
            if not force:
                raise OutputConflictError(
                    f"{self.output}: holds the output of a different scrub job",
                    hint="choose another OUTPUT, or pass --force to replace it")
            self._remove_outputs(_recorded(self.done_dir))
            shutil.rmtree(self.root)
        elif existing is None and any(self._holds_something(f) for f in (self.output, self.root)):
            if not force:
                busy = self.output if self._holds_something(self.output) else self.root
                raise OutputConflictError(
                    f"{busy}: exists and is not empty",
                    hint="choose another OUTPUT, or pass --force to write into it")
        wanted = set(shards)
        if existing == self.job:  # a rerun: shards of input shards that are gone go too
            gone = _recorded(self.done_dir) - wanted
            self._remove_outputs(gone)
            for name in gone:
                (self.done_dir / f"{name}.json").unlink(missing_ok=True)
        if self.output.is_dir():
            strays = sorted(p.name for p in self.output.iterdir()
                            if p.suffix.lower() == ".parquet" and p.name not in wanted)
            if strays:
                raise OutputConflictError(
                    f"{self.output}: holds parquet files that are not this job's shards "
                    f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''}); readers of "
                    "OUTPUT would take them as rows", hint="remove them, or choose another OUTPUT")
        self.output.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)  # leftovers of an interrupted run
        try:  # first: an OUTPUT that cannot be written fails before anything is written
            self.tmp_dir.mkdir()
        except OSError as exc:  # named as the user named it, not by scrub's folder in it
            raise OSError(exc.errno, exc.strerror, str(self.output)) from None
        self.done_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / "job.json", self.job)

    def _remove_outputs(self, names: Iterable[str]) -> None:
        """Remove output shards (and a webdataset shard's tar) that an earlier job recorded."""
        for name in names:
            if "/" in name or name.startswith("."):  # markers name plain files of OUTPUT only
                continue
            shard = self.output / name
            shard.unlink(missing_ok=True)
            shard.with_suffix(".tar").unlink(missing_ok=True)

    def _holds_something(self, folder: Path) -> bool:
        """Whether ``folder`` holds anything but the partial-file folder of a job killed
        before it recorded itself."""
        return folder.is_dir() and any(p != self.tmp_dir for p in folder.iterdir())

    def finish(self) -> None:
        """The job is complete: its partial-file folder goes, leaving OUTPUT its shards."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

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


def _recorded(done: Path) -> set[str]:
    """The shard names a job's completion markers record."""
    if not done.is_dir():
        return set()
    return {p.name[:-len(".json")] for p in done.iterdir() if p.name.endswith(".json")}


def input_identity(shard: Shard) -> tuple[int, int]:
    """(size, mtime in ns) of an input shard: a changed input invalidates its marker."""
    st = shard.path.stat()
    return st.st_size, st.st_mtime_ns
