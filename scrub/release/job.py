"""``scrub release build`` as one library call: the options in, the published release and its
summary out (policies loaded, plan made, previous release checked, variants built, signed and
published, the ledger's requests marked applied)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrub.errors import UserInputError
from scrub.layout import companion
from scrub.release.publish import BuildResult
from scrub.release.signed import AUDIT_JSON
from scrub.release.staging import Location
from scrub.release.stats import VariantShardStats

if TYPE_CHECKING:
    from scrub.ledger.service import Ledger
    from scrub.runtime import Executor


@dataclass
class BuildOptions:
    """What ``scrub release build`` is given (see its options for each one's meaning). INPUT,
    OUT, ``previous`` and ``from_release`` may lie in object storage (``s3://bucket/prefix``);
    keys, policies, the store, the ledger and the scores are local."""

    input: Location
    output: Location
    policies: list[Path]
    signing_key: Path
    store: Path | None = None
    key_file: Path | None = None
    db_url: str | None = None
    scores: Path | None = None
    release_id: str | None = None
    dataset: str | None = None
    previous: Location | None = None
    from_release: Location | None = None
    verify_inputs: bool = False
    workers: int | None = None
    columns: list[str] = field(default_factory=list)
    allow_empty: bool = False
    ledger_update: bool = True
    engine: str = "local"
    address: str | None = None
    progress: bool = True


@dataclass
class BuildSummary:
    """A published release: its id, the requests marked applied, per variant its folder,
    rows, removals per reason and the shards built or reused, and the time this run took (the
    signed audit holds no clock reading: a release is reproducible byte for byte)."""

    release_id: str
    marked: list[int]
    variants: dict[str, dict[str, Any]]
    duration_seconds: float | None = None

    def as_json(self) -> dict[str, object]:
        return {"release_id": self.release_id, "requests_marked_applied": len(self.marked),
                "requests_applied": self.marked, "variants": self.variants,
                "duration_seconds": self.duration_seconds}


def build_release(options: BuildOptions) -> BuildSummary:
    """Build every policy's variant in one pass; sign manifests; write audits and removal
    lists; mark the ledger's requests applied with the release id (unless told not to)."""
    from scrub.release.build import early_workers

    o = options
    # a fresh local build's workers start now: they warm up while the lists and ledger load
    with early_workers(o.input, o.output, engine=o.engine, workers=o.workers,
                       incremental=o.from_release is not None) as executor:
        return _build_release(o, executor)


def _build_release(options: BuildOptions, executor: Executor | None) -> BuildSummary:
    """:func:`build_release`, its shards on ``executor`` when workers were started early."""
    from scrub.crypto import load_key, load_signing_key, resolve_key_file
    from scrub.dataset import parse_role_overrides
    from scrub.lists.store import ListStore
    from scrub.release.build import build, plan_release
    from scrub.release.ledger import mark_release_applied
    from scrub.release.manifest import Finisher
    from scrub.release.policy import check_score_columns, load_policy
    from scrub.release.reuse import prepare_reuse
    from scrub.release.signed import release_secret
    from scrub.runtime import check_engine

    o = options
    started = time.monotonic()  # the summary's time taken (never in signed files)
    check_engine(o.engine, o.address)
    policies = [load_policy(p) for p in o.policies]
    check_score_columns(policies, o.input, overrides=parse_role_overrides(o.columns))
    private = load_signing_key(o.signing_key)
    key_path = resolve_key_file(o.key_file)
    key = load_key(key_path) if key_path else None
    ledger = _open_ledger(o.db_url, key) if any(p.ledger for p in policies) else None
    release = plan_release(policies, store=ListStore(o.store) if o.store else None, key=key,
                           ledger=ledger, scores=o.scores)
    secret = release_secret(private)
    reuse = None
    if o.from_release is not None:
        reuse = prepare_reuse(o.from_release, o.input, release, policies,
                              store=ListStore(o.store) if o.store else None, key=key,
                              ledger=ledger, scores=o.scores, secret=secret,
                              signer=private.public_key(), verify_inputs=o.verify_inputs)
    elif o.verify_inputs:
        raise UserInputError("--verify-inputs checks the inputs of a --from build")
    dataset = o.dataset
    if dataset is None and reuse is not None:  # a rebuild keeps the release's dataset name
        dataset = next(iter(reuse.manifests.values())).get("dataset")
    finisher = Finisher(release, o.input, private, dataset=dataset or o.input.resolve().name,
                        previous=o.previous, carry=reuse)
    marked: list[int] = []

    def mark_applied(published: BuildResult) -> None:
        """After publication, before the staging folder goes: a rerun after a kill runs it
        again (it records nothing twice)."""
        if ledger is not None and o.ledger_update:
            marked[:] = mark_release_applied(ledger, published, private.public_key())

    result = build(o.input, o.output, release, secret=secret, release_id=o.release_id,
                   workers=o.workers, overrides=parse_role_overrides(o.columns),
                   allow_empty=o.allow_empty, progress=o.progress, reuse=reuse,
                   finish=finisher, engine=o.engine, published=mark_applied,
                   address=o.address, executor=executor)
    return BuildSummary(result.release_id, marked,
                        {name: variant_summary(path, result.stats[name])
                         for name, path in result.variants.items()},
                        duration_seconds=round(time.monotonic() - started, 1))


def _open_ledger(db_url: str | None, key: bytes | None) -> Ledger:
    """The ledger; the key opens the requests' items and authenticates its history."""
    from scrub.ledger.db import make_engine
    from scrub.ledger.service import IdentitySeal, Ledger

    return Ledger(make_engine(db_url), seal=IdentitySeal(key) if key else None)


def variant_summary(folder: Location, stats: list[VariantShardStats]) -> dict[str, Any]:
    """A published variant as the build's summary shows it: counts from its audit, and how
    many of its shards were reused from the --from release and how many built."""
    audit = json.loads((companion(folder) / AUDIT_JSON).read_text())
    reused = sum(1 for s in stats if s.reused)
    return {"folder": str(folder), "rows_in": audit["rows_in"], "rows_out": audit["rows_out"],
            "removed": audit["removed"], "removed_by_reason": audit["removed_by_reason"],
            "rows_with_several_reasons": audit.get("rows_with_several_reasons", 0),
            "shards_reused": reused, "shards_built": len(stats) - reused}
