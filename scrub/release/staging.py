"""The staging folder of a release build (``OUT/.scrub-release``): the job (``job.json``: its
identity, day, release id and removal key) and a completion marker per built shard
(``.done/SHARD.json``, each variant's stats), so an interrupted build resumes with the same
bytes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scrub import __version__
from scrub.atomic import atomic_write_json
from scrub.dataset import Shard
from scrub.release.plan import ReleasePlan
from scrub.release.stats import VariantShardStats

STAGING = ".scrub-release"


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


def job_identity(source: Path, shards: Sequence[Shard], release: ReleasePlan,
                 overrides: dict[str, str] | None, previous: Path | None) -> JobIdentity:
    input_shards = [(s.name, s.path.stat().st_size, s.path.stat().st_mtime_ns) for s in shards]
    body: dict[str, object] = {
        "scrub_version": __version__, "input": str(source.resolve()),
        "input_shards": [list(entry) for entry in input_shards],
        "plan": release.plan.fingerprint(),
        "policies": {v.policy.name: v.policy.sha256 for v in release.variants},
        "columns": dict(sorted((overrides or {}).items())),
        "from": str(previous.resolve()) if previous else None,
    }
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    inputs = hashlib.sha256(json.dumps({k: v for k, v in body.items() if k != "plan"},
                                       sort_keys=True).encode()).hexdigest()
    return JobIdentity(body, fingerprint, inputs, input_shards)


@dataclass
class Job:
    """A build job as ``job.json`` records it. Everything in it is a function of the job (the
    day, the inputs, the policies, the signing key), so an interrupted build and an
    uninterrupted one give the same bytes."""

    fingerprint: str
    inputs: str
    created_at: str
    release_id: str
    removal_key: str
    finished: bool = False

    @classmethod
    def new(cls, identity: JobIdentity, *, release_id: str | None, removal_key: str | None,
            secret: bytes) -> Job:
        """A job started today. ``removal_key``: the key of the release a rebuild extends;
        else one derived from ``secret`` and the job (unguessable before publication)."""
        created = dt.datetime.now(dt.timezone.utc).date()
        fingerprint = identity.fingerprint
        key = removal_key if removal_key is not None else hmac.new(
            secret, f"removals:{fingerprint}".encode(), hashlib.sha256).hexdigest()
        return cls(fingerprint, identity.inputs, created.isoformat(),
                   release_id or f"{created:%Y%m%d}-{fingerprint[:10]}", key)

    def record(self) -> dict[str, object]:
        body: dict[str, object] = {
            "fingerprint": self.fingerprint, "inputs": self.inputs,
            "created_at": self.created_at, "release_id": self.release_id,
            "removal_key": self.removal_key}
        if self.finished:
            body["finished"] = True
        return body

    @classmethod
    def from_record(cls, body: dict[str, object]) -> Job:
        return cls(fingerprint=str(body.get("fingerprint", "")),
                   inputs=str(body.get("inputs", "")),
                   created_at=str(body.get("created_at", "")),
                   release_id=str(body.get("release_id", "")),
                   removal_key=str(body.get("removal_key", "")),
                   finished=bool(body.get("finished")))


class Staging:
    """The staging folder of a build into ``output``."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.root = output / STAGING
        self.job_path = self.root / "job.json"
        self.done_dir = self.root / ".done"

    def read_job(self) -> Job | None:
        if not self.job_path.is_file():
            return None
        return Job.from_record(json.loads(self.job_path.read_text()))

    def save(self, job: Job) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.job_path, job.record())

    def completed(self, shards: Iterable[Shard]) -> dict[str, dict[str, VariantShardStats]]:
        """Shard name -> variant -> stats, of the shards a completion marker records."""
        self.done_dir.mkdir(parents=True, exist_ok=True)
        found = {}
        for shard in shards:
            marker = self.done_dir / f"{shard.name}.json"
            if marker.is_file():
                found[shard.name] = _read_marker(marker)
        return found

    def mark_done(self, shard_name: str, per_variant: dict[str, VariantShardStats]) -> None:
        atomic_write_json(self.done_dir / f"{shard_name}.json",
                          {name: stat.marker() for name, stat in per_variant.items()},
                          durable=False)

    def recorded_stats(self, names: Sequence[str]) -> dict[str, list[VariantShardStats]]:
        """Each variant's stats from every completion marker, in shard name order."""
        markers = [_read_marker(m) for m in sorted(self.done_dir.glob("*.json"))]
        return {name: [m[name] for m in markers] for name in names}

    def discard(self) -> None:
        shutil.rmtree(self.root)


def _read_marker(path: Path) -> dict[str, VariantShardStats]:
    return {name: VariantShardStats.from_record(body)
            for name, body in json.loads(path.read_text()).items()}
