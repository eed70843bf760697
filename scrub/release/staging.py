"""The staging folder of a release build (``OUT/.scrub-release``), a runtime staging area
(:class:`~scrub.runtime.StagingArea`): the job (``job.json``: its identity, day, release id and
removal key) and a completion marker per built shard (``.done/SHARD.json``, each variant's
stats), so an interrupted build resumes with the same bytes.

An OUT in object storage has no rename: the staging prefix ``OUT/.scrub-release/`` holds the
job, the markers and the removal rows only, and the build writes every other file straight to
its place in OUT (:attr:`Staging.files`), each object appearing whole; the signatures come last,
so a variant without one is not published."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrub import __version__
from scrub.atomic import remove_tree
from scrub.dataset import Shard
from scrub.layout import companion
from scrub.release.probe import PROBE_DIR
from scrub.release.state import STATE_DIR
from scrub.release.stats import VariantShardStats
from scrub.runtime import StagingArea, fingerprint
from scrub.storage import ObjectPath

#: Where a build reads or writes: a local folder, or a prefix in object storage.
Location = Path | ObjectPath

STAGING = ".scrub-release"
#: The markers' folder in the staging folder (hidden: the staged variants lie beside it).
MARKERS = ".done"
#: Each variant's removal rows per shard, staged until the removal list is written.
REMOVAL_PARTS = ".removals"


def removal_parts(files: Location) -> Location:
    """Where the shards' removal rows are staged, given where the build writes its files
    (:attr:`Staging.files`): beside the staged variants locally; in the staging prefix when
    OUT lies in object storage (its variants are written in OUT itself)."""
    return (files / STAGING if isinstance(files, ObjectPath) else files) / REMOVAL_PARTS


@dataclass(frozen=True)
class JobIdentity:
    """What makes a build the same job: ``body`` (version, input shards with size and mtime,
    plan, policies, column overrides, the release it extends), its ``fingerprint``, and
    ``inputs``, the fingerprint of all but the plan (equal when only the lists or the ledger
    moved, as the ledger update of an interrupted build moves it)."""

    body: dict[str, object]
    fingerprint: str
    inputs: str
    input_shards: list[tuple[str, int, int]]


def job_identity(source: Location, shards: Sequence[Shard], *, plan: str,
                 policies: Mapping[str, str], overrides: dict[str, str] | None,
                 previous: Location | None) -> JobIdentity:
    """The identity of a build of ``shards`` with the plan of fingerprint ``plan`` and
    ``policies`` (name -> sha256)."""
    input_shards = [(s.name, s.path.stat().st_size, s.path.stat().st_mtime_ns) for s in shards]
    body: dict[str, object] = {
        "scrub_version": __version__, "input": str(source.resolve()),
        "input_shards": [list(entry) for entry in input_shards],
        "plan": plan, "policies": dict(policies),
        "columns": dict(sorted((overrides or {}).items())),
        "from": str(previous.resolve()) if previous else None,
    }
    inputs = fingerprint({k: v for k, v in body.items() if k != "plan"})
    return JobIdentity(body, fingerprint(body), inputs, input_shards)


@dataclass
class Job:
    """A build job as ``job.json`` records it. Everything in it is a function of the job (the
    day, the inputs, the policies, the signing key), so an interrupted build and an
    uninterrupted one give the same bytes. ``variants``: the variants' names (an OUT in object
    storage receives their files as they are built: a build that replaces this one removes
    them)."""

    fingerprint: str
    inputs: str
    created_at: str
    release_id: str
    removal_key: str
    finished: bool = False
    variants: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, identity: JobIdentity, *, release_id: str | None, removal_key: str | None,
            secret: bytes, variants: Sequence[str] = ()) -> Job:
        """A job started today. ``removal_key``: the key of the release a rebuild extends;
        else one derived from ``secret`` and the job (unguessable before publication)."""
        created = dt.datetime.now(dt.UTC).date()
        fingerprint = identity.fingerprint
        key = removal_key if removal_key is not None else hmac.new(
            secret, f"removals:{fingerprint}".encode(), hashlib.sha256).hexdigest()
        return cls(fingerprint, identity.inputs, created.isoformat(),
                   release_id or f"{created:%Y%m%d}-{fingerprint[:10]}", key,
                   variants=list(variants))

    def record(self) -> dict[str, object]:
        body: dict[str, object] = {
            "fingerprint": self.fingerprint, "inputs": self.inputs,
            "created_at": self.created_at, "release_id": self.release_id,
            "removal_key": self.removal_key}
        if self.finished:
            body["finished"] = True
        if self.variants:
            body["variants"] = list(self.variants)
        return body

    @classmethod
    def from_record(cls, body: dict[str, object]) -> Job:
        return cls(fingerprint=str(body.get("fingerprint", "")),
                   inputs=str(body.get("inputs", "")),
                   created_at=str(body.get("created_at", "")),
                   release_id=str(body.get("release_id", "")),
                   removal_key=str(body.get("removal_key", "")),
                   finished=bool(body.get("finished")),
                   variants=[str(v) for v in variants if isinstance(v, str)]
                   if isinstance(variants := body.get("variants"), list) else [])


class Staging(StagingArea):
    """The staging folder of a build into ``output``: its job as a :class:`Job`, its markers
    as each variant's :class:`VariantShardStats` of the shard."""

    def __init__(self, output: Location) -> None:
        super().__init__(output, STAGING, markers=MARKERS)

    @property
    def remote(self) -> bool:
        """Whether OUT lies in object storage."""
        return isinstance(self.output, ObjectPath)

    @property
    def files(self) -> Location:
        """Where the build writes the variants, their companions and its private state: the
        staging folder, moved into OUT when all is written; OUT itself in object storage."""
        return self.output if isinstance(self.output, ObjectPath) else self.root

    def discard_job(self, job: Job | None) -> None:
        """Remove the staging folder (of ``job``, an unpublished build, or of none); in object
        storage also what such a build writes in OUT as it goes: ``job``'s variants and their
        companions, and the private state."""
        if isinstance(self.output, ObjectPath):
            for name in job.variants if job is not None else []:
                for folder in (self.output / name, companion(self.output / name)):
                    remove_tree(folder)
            for private in (PROBE_DIR, STATE_DIR):
                remove_tree(self.output / private)
        if self.root.exists():
            self.discard()

    def read_job(self) -> Job | None:
        body = self.read_record()
        return None if body is None else Job.from_record(body)

    def save(self, job: Job) -> None:
        self.write_record(job.record())

    def completed(self, shard: Shard) -> dict[str, VariantShardStats] | None:
        """Variant -> stats of ``shard`` when a completion marker records it built, else None
        (a marker that cannot be read makes the shard be built again)."""
        marker = self.markers.get(shard.name)
        try:
            return None if marker is None else _stats(marker)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def mark_done(self, shard_name: str, per_variant: dict[str, VariantShardStats]) -> None:
        self.markers.record(shard_name, {name: stat.marker()
                                         for name, stat in per_variant.items()})

    def recorded_stats(self, names: Sequence[str]) -> dict[str, list[VariantShardStats]]:
        """Each variant's stats from every completion marker, in shard name order."""
        markers = [_stats(body) for _, body in self.markers.recorded()]
        return {name: [m[name] for m in markers] for name in names}


def _stats(marker: Mapping[str, Any]) -> dict[str, VariantShardStats]:
    return {name: VariantShardStats.from_record(body) for name, body in marker.items()}
