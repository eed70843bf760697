"""Job state of an output folder: identity, per-shard completion markers, staging, publish.

The state lies in OUTPUT's companion folder ``OUTPUT.scrub/`` (:mod:`scrub.layout`), so that
a finished OUTPUT holds its shards only: ``job.json`` (what job OUTPUT belongs to) and
``done/NAME.json`` (one marker per completed shard: JSON stats of the job's choosing, with the
identity of the input it was made from). Partial files are staged in ``OUTPUT/.scrub-tmp/``, on
OUTPUT's own file system (OUTPUT may be a mount point), and renamed into place when complete.
A rerun of the same job skips shards whose marker the job finds current; anything else is
recomputed, and since the work is deterministic the bytes come out the same. Older scrubs kept
the state in ``OUTPUT/.scrub/`` (:data:`LEGACY_STATE_DIR`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scrub.atomic import atomic_write_json
from scrub.errors import OutputConflictError, UserInputError
from scrub.layout import companion

#: Where scrub before the companion folders kept a job's state: inside OUTPUT.
LEGACY_STATE_DIR = ".scrub"
#: Partial files of a running job, inside OUTPUT (a rename never crosses file systems).
TMP_DIR = ".scrub-tmp"


class JobState:
    """The resumable state of one job in its output folder."""

    def __init__(self, output: Path, job: Mapping[str, object]) -> None:
        self.output = output
        self.job = dict(job)
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

    def marker(self, name: str) -> dict[str, Any] | None:
        """The completion marker of output ``name`` as JSON, or None (missing or unreadable)."""
        path = self.done_dir / f"{name}.json"
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def completed(self, name: str, current: Callable[[dict[str, Any]], bool]
                  ) -> dict[str, Any] | None:
        """The marker of output ``name`` when ``current`` finds it matches the input and the
        output files as they are now; else None (the shard is to be made again)."""
        marker = self.marker(name)
        try:
            return marker if marker is not None and current(marker) else None
        except (KeyError, TypeError, ValueError, OSError):
            return None

    def commit(self, name: str, staged: Sequence[tuple[Path, str]],
               stats: Mapping[str, Any]) -> None:
        """Move finished (already fsynced) files into OUTPUT (``(tmp, final name)``, in order;
        the shard ``name`` last), then record the shard as done with ``stats``.

        The marker needs no fsync: lost or torn, it only makes a rerun redo the shard."""
        for tmp, final in staged:
            os.replace(tmp, self.output / final)
        atomic_write_json(self.done_dir / f"{name}.json", dict(stats), durable=False)

    def staging(self, name: str) -> Path:
        """Where a partial file for OUTPUT's ``name`` is written (renamed by :meth:`commit`)."""
        return self.tmp_dir / f"{name}.partial"


def has_size(path: Path, size: object) -> bool:
    """Whether ``path`` is a file of ``size`` bytes (a marker's check of an output)."""
    return path.is_file() and path.stat().st_size == size


def _recorded(done: Path) -> set[str]:
    """The shard names a job's completion markers record."""
    if not done.is_dir():
        return set()
    return {p.name[:-len(".json")] for p in done.iterdir() if p.name.endswith(".json")}

