"""Publishing a staged release: each variant and its companion folder moved into ``OUT``, the
build's private state beside them, then the caller's ledger update, then the staging folder
removed. A rerun after a kill at any point finishes the same release. In object storage there
is nothing to move (the build wrote every file in place, each signature last): publishing is
the ledger update, then the staging prefix removed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scrub.atomic import remove_tree
from scrub.layout import COMPANION_SUFFIX, companion
from scrub.release.probe import PROBE_DIR
from scrub.release.signed import MANIFEST
from scrub.release.staging import Job, Location, Staging
from scrub.release.state import STATE_DIR
from scrub.release.stats import VariantShardStats


@dataclass
class BuildResult:
    """A published release: its id, each variant's folder, each variant's shard stats."""

    release_id: str
    variants: dict[str, Location]
    stats: dict[str, list[VariantShardStats]]
    job: Job


#: Called once every variant is published, before the staging folder goes (idempotent).
Published = Callable[[BuildResult], None]


def published_by(output: Location, job: Job) -> set[str]:
    """The variants in ``output`` whose manifest (in their companion folder) names ``job``'s
    release."""
    found = set()
    manifests = (output.glob(f"*{COMPANION_SUFFIX}/{MANIFEST}") if isinstance(output, Path)
                 else [child / MANIFEST for child in output.iterdir()
                       if child.name.endswith(COMPANION_SUFFIX)])
    for manifest in manifests:
        try:
            if json.loads(manifest.read_text()).get("release_id") == job.release_id:
                found.add(manifest.parent.name[: -len(COMPANION_SUFFIX)])
        except (OSError, ValueError, AttributeError):
            continue
    return found


def publish(staging: Staging, job: Job, published: Published | None, *,
            names: list[str] | None = None,
            stats: dict[str, list[VariantShardStats]] | None = None) -> BuildResult:
    """Move the staged variants into the output (those an interrupted run moved stay): each
    variant folder, then its companion, so that a variant is published once its manifest is
    there. Then call ``published(result)``, then remove the staging folder: until that runs to
    its end a rerun finds the staging folder and finishes the job. ``names`` and ``stats``
    default to what the staging folder and the output record."""
    stage, output = staging.root, staging.output
    if names is None:
        names = sorted(published_by(output, job) | (set() if staging.remote else {
            p.name[: -len(COMPANION_SUFFIX)] for p in stage.iterdir()
            if p.name.endswith(COMPANION_SUFFIX) and (p / MANIFEST).is_file()}))
    if isinstance(stage, Path) and isinstance(output, Path):
        _move_into(stage, output, names)
    if stats is None:  # from the completion markers, as the job recorded them
        stats = staging.recorded_stats(names)
    result = BuildResult(job.release_id, {name: output / name for name in names}, stats, job)
    if published is not None:
        published(result)
    remove_tree(stage)
    return result


def _move_into(stage: Path, output: Path, names: list[str]) -> None:
    """Move the staged variants, their companions and the private state into ``output``
    (each variant folder, then its companion; those an interrupted run moved stay)."""
    output.mkdir(parents=True, exist_ok=True)
    for name in names:
        for folder in (stage / name, companion(stage / name)):
            if folder.is_dir():
                os.replace(folder, output / folder.name)
    for private in (PROBE_DIR, STATE_DIR):  # beside the variants: never published with them
        if (stage / private).is_dir():
            shutil.rmtree(output / private, ignore_errors=True)  # a leftover of this job's own
            os.replace(stage / private, output / private)
