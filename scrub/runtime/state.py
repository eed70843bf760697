"""Job state of an output folder: identity, per-shard completion markers, staging, publish.

The state lies in OUTPUT's companion folder ``OUTPUT.scrub/`` (:mod:`scrub.layout`), so that
a finished OUTPUT holds its shards only: ``job.json`` (what job OUTPUT belongs to) and
``done/NAME.json`` (one marker per completed shard: JSON stats of the job's choosing, with the
identity of the input it was made from). Partial files are staged in ``OUTPUT/.scrub-tmp/``, on
OUTPUT's own file system (OUTPUT may be a mount point), and renamed into place when complete.
A rerun of the same job skips shards whose marker the job finds current; anything else is
recomputed, and since the work is deterministic the bytes come out the same. Older scrubs kept
the state in ``OUTPUT/.scrub/`` (:data:`LEGACY_STATE_DIR`).

A job whose whole output is published at once (``release build``) stages it instead in one
folder inside OUTPUT, with its record and markers (:class:`StagingArea`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scrub.atomic import atomic_write_json, publish_file, remove_tree
from scrub.errors import OutputConflictError, UserInputError
from scrub.layout import companion
from scrub.storage import MissingBucketError, ObjectPath, is_remote
from scrub.storage.streams import UploadSlot

#: An output folder: local, or a prefix in object storage.
Folder = Path | ObjectPath

#: Where scrub before the companion folders kept a job's state: inside OUTPUT.
LEGACY_STATE_DIR = ".scrub"
#: Partial files of a running job, inside OUTPUT (a rename never crosses file systems).
TMP_DIR = ".scrub-tmp"


class JobState:
    """The resumable state of one job in its output folder."""

    def __init__(self, output: Folder, job: Mapping[str, object]) -> None:
        self.output = output
        self.job = dict(job)
        self.root = companion(output)
        self.done_dir = self.root / "done"
        self.markers = Markers(self.done_dir)
        self.tmp_dir: Path = (output / TMP_DIR if isinstance(output, Path)
                              else local_staging(output))
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
        if is_remote(self.output):
            _claim_bucket(self.output)
        for folder in (self.output, self.root):
            if folder.exists() and not folder.is_dir():
                raise UserInputError(f"{folder}: exists and is not a folder")
        existing = self._existing_job()
        if existing is None:
            self._claim_legacy(force=force)
        self._claim(existing, force=force)
        wanted = set(shards)
        if existing == self.job:  # a rerun: shards of input shards that are gone go too
            gone = self.markers.names() - wanted
            self._remove_outputs(gone)
            for name in gone:
                self.markers.remove(name)
        self._refuse_strays(wanted)
        if isinstance(self.output, ObjectPath):  # only once OUTPUT is this job's: a run
            _abort_uploads(self.output)  # refused above aborts no upload of another writer
        self.output.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)  # leftovers of an interrupted run
        try:  # first: an OUTPUT that cannot be written fails before anything is written
            self.tmp_dir.mkdir(parents=is_remote(self.output))
        except OSError as exc:  # named as the user named it, not by scrub's folder in it
            raise OSError(exc.errno, exc.strerror, str(self.output)) from None
        # job.json before anything else in the companion folder: a run killed in between leaves
        # an empty folder (claimable), never state without the job it belongs to.
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / "job.json", self.job)
        self.done_dir.mkdir(exist_ok=True)

    def _claim_legacy(self, *, force: bool) -> None:
        """Replace (with ``force``) or refuse the state an older scrub kept inside OUTPUT."""
        legacy = self.output / LEGACY_STATE_DIR
        if not (legacy / "job.json").is_file():
            return
        if not force:
            raise OutputConflictError(
                f"{self.output}: holds the output of an older scrub (its state inside it, "
                f"in {LEGACY_STATE_DIR}/)",
                hint="choose another OUTPUT, or pass --force to replace it")
        self._remove_outputs(Markers(legacy / "done").names())
        remove_tree(legacy)
        self.replaced_legacy = True

    def _claim(self, existing: dict[str, object] | None, *, force: bool) -> None:
        """Replace (with ``force``) or refuse another job's output, or a folder in use."""
        if existing is not None and existing != self.job:
            if not force:
                raise OutputConflictError(
                    f"{self.output}: holds the output of a different scrub job",
                    hint="choose another OUTPUT, or pass --force to replace it")
            self._remove_outputs(self.markers.names())
            remove_tree(self.root)
        elif (existing is None and not force
              and any(self._holds_something(f) for f in (self.output, self.root))):
            busy = self.output if self._holds_something(self.output) else self.root
            raise OutputConflictError(
                f"{busy}: exists and is not empty",
                hint="choose another OUTPUT, or pass --force to write into it")

    def _refuse_strays(self, wanted: set[str]) -> None:
        """Refuse parquet files in OUTPUT that are not this job's shards."""
        if not self.output.is_dir():
            return
        # in object storage, a prefix named like a shard (even like this job's) holds rows too
        children = (self.output.list_children() if isinstance(self.output, ObjectPath)
                    else [(p, True) for p in self.output.iterdir()])
        strays = sorted({p.name for p, is_object in children
                         if p.suffix.lower() == ".parquet"
                         and (p.name not in wanted or not is_object)})
        if strays:
            raise OutputConflictError(
                f"{self.output}: holds parquet files that are not this job's shards "
                f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''}); readers of "
                "OUTPUT would take them as rows", hint="remove them, or choose another OUTPUT")

    def _remove_outputs(self, names: Iterable[str]) -> None:
        """Remove output shards (and a webdataset shard's tar) that an earlier job recorded."""
        for name in names:
            if "/" in name or name.startswith("."):  # markers name plain files of OUTPUT only
                continue
            shard = self.output / name
            shard.unlink(missing_ok=True)
            shard.with_suffix(".tar").unlink(missing_ok=True)

    def _holds_something(self, folder: Folder) -> bool:
        """Whether ``folder`` holds anything but what a job killed before it recorded itself
        leaves: the partial-file folder, a partial ``job.json``. In object storage, objects
        count, not prefixes (some stores keep listing a prefix whose objects are gone)."""
        if isinstance(folder, ObjectPath):
            return bool(folder.walk_files())
        return folder.is_dir() and any(
            p != self.tmp_dir and not (folder == self.root and p.name.startswith(".job.json."))
            for p in folder.iterdir())

    def finish(self) -> None:
        """The job is complete: its partial-file folder goes, leaving OUTPUT its shards (in
        object storage, uploads left incomplete by a worker that died are aborted too)."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if isinstance(self.output, ObjectPath):
            _abort_uploads(self.output)

    def _existing_job(self) -> dict[str, object] | None:
        return read_record(self.root / "job.json")

    def marker(self, name: str) -> dict[str, Any] | None:
        """The completion marker of output ``name`` as JSON, or None (missing or unreadable)."""
        return self.markers.get(name)

    def completed(self, name: str, current: Callable[[dict[str, Any]], bool]
                  ) -> dict[str, Any] | None:
        """The marker of output ``name`` when ``current`` finds it matches the input and the
        output files as they are now; else None (the shard is to be made again)."""
        return self.markers.completed(name, current)

    def commit(self, name: str, staged: Sequence[tuple[Path | UploadSlot, str]],
               stats: Mapping[str, Any]) -> None:
        """Move finished (already fsynced) files into OUTPUT (``(tmp, final name)``, in order;
        the shard ``name`` last), then record the shard as done with ``stats``.

        The marker needs no fsync: lost or torn, it only makes a rerun redo the shard."""
        for tmp, final in staged:
            if isinstance(tmp, UploadSlot):
                tmp.complete()
            else:
                publish_file(tmp, self.output / final)
        self.markers.record(name, stats)

    def staging(self, name: str) -> Path:
        """Where a partial file for OUTPUT's ``name`` is written (renamed by :meth:`commit`,
        or uploaded when OUTPUT lies in object storage: then it is a local folder, made on
        first use on each node)."""
        if is_remote(self.output):
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{name}.partial"

    def output_slot(self, name: str) -> Path | UploadSlot:
        """Where output ``name`` is written before :meth:`commit`: the staging file, or, for
        an OUTPUT in S3, an upload written while it is produced (completed by the commit,
        aborted when discarded)."""
        if isinstance(self.output, ObjectPath) and self.output.scheme == "s3":
            return UploadSlot(self.output / name)
        return self.staging(name)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in a worker (on another node, for a Ray task): the partial files of an
        OUTPUT in object storage go to that node's own temporary folder, not to the path the
        driver's machine would have used."""
        self.__dict__.update(state)
        if is_remote(self.output):
            self.tmp_dir = local_staging(self.output)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)


def _abort_uploads(output: ObjectPath) -> None:
    """Abort the incomplete uploads under OUTPUT and its companion (a killed run's)."""
    output.abort_uploads()
    companion(output).abort_uploads()


def local_staging(output: object) -> Path:
    """The local folder where partial files of an OUTPUT in object storage are written before
    their upload (one per OUTPUT, in this machine's temporary folder)."""
    digest = hashlib.sha256(str(output).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"scrub-staging-{digest}"


def _claim_bucket(output: Any) -> None:
    """An OUTPUT in object storage: its bucket must exist (scrub never creates one). The
    uploads a killed run left incomplete are aborted once OUTPUT is found to be this job's."""
    if not _bucket(output):
        raise MissingBucketError(f"{output}: no such bucket",
                                 hint="create the bucket first, or check the location")


def _bucket(output: Any) -> bool:
    from scrub.storage.filesystems import bucket_exists

    return bucket_exists(output)


def has_size(path: Folder, size: object) -> bool:
    """Whether ``path`` is a file of ``size`` bytes (a marker's check of an output)."""
    return path.is_file() and path.stat().st_size == size


def read_record(path: Folder) -> dict[str, Any] | None:
    """A job's record (``job.json``) as JSON; None when missing, ``{"unreadable": True}``
    when torn or not an object (a record no job matches, so the folder is another job's)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except ValueError:
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"unreadable": True}


class Markers:
    """Completion markers in one folder: ``NAME.json`` per completed unit, holding the job's
    own JSON record of it. A marker lost or torn (written without fsync) only makes a rerun
    redo its unit, so an unreadable one counts as missing."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder

    def path(self, name: str) -> Folder:
        return self.folder / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        """The marker of unit ``name`` as JSON, or None (missing or unreadable)."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def completed(self, name: str, current: Callable[[dict[str, Any]], bool]
                  ) -> dict[str, Any] | None:
        """The marker of ``name`` when ``current`` finds it still true of the input and the
        outputs; else None (the unit is to be done again)."""
        marker = self.get(name)
        try:
            return marker if marker is not None and current(marker) else None
        except (KeyError, TypeError, ValueError, OSError):
            return None

    def record(self, name: str, body: Mapping[str, Any]) -> None:
        """Record unit ``name`` as done with ``body`` (its outputs already in place)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(name), dict(body), durable=False)

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def names(self) -> set[str]:
        """The units recorded as done."""
        if not self.folder.is_dir():
            return set()
        return {p.name[:-len(".json")] for p in self.folder.iterdir()
                if p.name.endswith(".json")}

    def recorded(self) -> list[tuple[str, dict[str, Any]]]:
        """Every readable marker with its unit's name, in the order of the markers' file
        names."""
        found = []
        for name in sorted(self.names(), key=lambda n: f"{n}.json"):
            marker = self.get(name)
            if marker is not None:
                found.append((name, marker))
        return found


class StagingArea:
    """A job whose whole output appears at once: everything is staged in ``OUTPUT/NAME``
    (inside OUTPUT, so that publishing is a rename on one file system) beside the job's record
    (``job.json``) and per-unit completion markers (``MARKERS/``); the job moves its parts into
    OUTPUT when all is written, then discards the folder. While the folder exists, a rerun
    finds the job there: the same job resumes from its markers, another one is the caller's
    to refuse, finish or discard."""

    def __init__(self, output: Folder, name: str, *, markers: str = "done") -> None:
        self.output = output
        self.root = output / name
        self.job_path = self.root / "job.json"
        self.markers = Markers(self.root / markers)

    def read_record(self) -> dict[str, Any] | None:
        """The staged job's record (see :func:`read_record`), or None when none is staged."""
        return read_record(self.job_path)

    def write_record(self, body: Mapping[str, object]) -> None:
        """Record the staged job (creating the staging folder), durably."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.job_path, dict(body))

    def discard(self) -> None:
        """Remove the staging folder and all it holds."""
        remove_tree(self.root)

