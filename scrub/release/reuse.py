"""Incremental rebuilds (``--from``): a previous signed release extended with new list versions
and requests. Shards the new rules cannot touch are reused byte for byte, each file checked
against the previous signed manifest; the others are built again. The previous release may lie
in object storage (its files are then copied server-side into an OUT there)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scrub.atomic import file_sha256, link_or_copy
from scrub.dataset import Shard, detect_roles, discover_shards, open_shard
from scrub.engine.kernel import decide
from scrub.engine.plan import MatchPlan
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.errors import ExternalSourceError, UserInputError, brief
from scrub.layout import companion
from scrub.lists.store import ListStore
from scrub.release.hashing import fsync_and_hash
from scrub.release.ledger import NewItems, ReleaseLedger
from scrub.release.plan import ReleasePlan, plan_release
from scrub.release.policy import Policy
from scrub.release.probe import (
    HOSTS,
    TAILS,
    RuleProbe,
    probe_key,
    probe_path,
    read_inputs,
    read_probes,
    rule_probes,
    ruled_out,
)
from scrub.release.shard import ShardTask, build_shard, embedding_file
from scrub.release.signed import (
    FORMAT,
    MANIFEST,
    REMOVALS,
    Listing,
    listed_files,
    locate_variant,
    read_variant,
)
from scrub.release.staging import Location
from scrub.release.state import read_state, state_path
from scrub.release.stats import VariantShardStats
from scrub.storage import location

#: A shard's previous manifest entries and states (drop mask, stats), one per variant.
Previous = tuple[list[dict[str, Any]], list[tuple[np.ndarray, VariantShardStats]]]


@dataclass
class Reuse:
    """What an incremental rebuild starts from: the previous release (``previous/<variant>``
    and ``previous/<variant>.scrub``), its manifests (their signatures verified), each one's
    files (path -> sha256, per folder), the key of its sealed shard states, and a plan of only
    the rules that are new since (list versions, requests)."""

    previous: Location
    manifests: dict[str, dict[str, Any]]
    delta: ReleasePlan
    files: dict[str, Listing]
    state_key: str

    @property
    def key(self) -> str:
        return str(next(iter(self.manifests.values()))["removals"]["key"])

    def checked_copy(self, variant: str, relative: str, target: Location, *,
                     in_companion: bool = False) -> None:
        """Link (or copy) the previous release's file ``variant/relative`` (in its companion
        folder ``variant.scrub/`` with ``in_companion``) to ``target`` and check the bytes
        there against the sha256 its signed manifest lists: a file changed since it was signed
        is never signed again (ExternalSourceError, exit 3)."""
        folder = self.previous / variant
        if in_companion:
            folder = companion(folder)
        source = folder / relative
        listing = self.files[variant]
        digest = (listing.meta if in_companion else listing.rows).get(relative)
        if digest is None:
            raise ExternalSourceError(f"--from {self.previous}: {folder.name}/{relative} is not "
                                      "in the previous release's signed manifest",
                                      hint="run a full build")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            link_or_copy(source, target)
            same = file_sha256(target) == digest
        except OSError as exc:
            raise ExternalSourceError(f"{source}: cannot be read ({brief(exc)})",
                                      hint="run a full build") from None
        if not same:
            target.unlink(missing_ok=True)
            raise ExternalSourceError(f"{source}: sha256 differs from the previous release's "
                                      "signed manifest (changed since it was signed)",
                                      hint="run a full build, from the input")


def prepare_reuse(previous: Location | str, source: Location, release: ReleasePlan,
                  policies: Sequence[Policy], *, store: ListStore | None, key: bytes | None,
                  ledger: ReleaseLedger | None, scores: Path | None, secret: bytes,
                  signer: Ed25519PublicKey, verify_inputs: bool = False) -> Reuse:
    """Check that ``previous`` can be extended (same policies, same input shards, only new
    list versions and requests since) and plan the new rules; otherwise a clear error.

    Every variant's manifest must verify with ``signer`` (the public half of this build's
    signing key) and name it, else ExternalSourceError (exit 3): nothing of an unsigned or
    altered release is reused. Each file reused later is checked against the manifest's sha256
    (:meth:`Reuse.checked_copy`), each shard state against its keyed tag. An input shard counts
    as unchanged when the previous build recorded it with the same size and modification time
    (``secret`` checks that record); any other is hashed and compared with the manifest's
    sha256 (every one with ``verify_inputs``)."""
    previous = location(previous)
    manifests, files = _signed_manifests(previous, policies, signer)
    _check_input_shards(previous, source, manifests,
                        {} if verify_inputs or secret is None
                        else read_inputs(previous, probe_key(secret)))
    old_requests = _check_still_applied(previous, manifests, release)
    new_lists = {(e["label"], e["sha256"]) for e in release.lists}
    old_lists = {(e["label"], e["sha256"]) for m in manifests.values() for e in m["lists"]}
    added = {label for label, _ in new_lists - old_lists}
    trimmed = [replace(p, lists=sorted(label for label in added
                                       if _uses(release, p.name, label)),
                       thresholds=[]) for p in policies]
    view = None
    if ledger is not None and any(p.ledger for p in policies):
        items = [i for i in ledger.enforced_items() if i[0] not in old_requests]
        view = NewItems(ledger, items, ledger.watermark())
    delta = plan_release(trimmed, store=store, key=key, ledger=view, scores=scores)
    # the counts of reused shards come from the previous build: the rules may skip rows
    delta.plan.rules = [rule.prefiltered() for rule in delta.plan.rules]
    reuse = Reuse(previous, manifests, delta, files, probe_key(secret))
    for name in manifests:  # carried into the new removal list: fail now rather than at the end
        carried_removals(reuse, name)
    return reuse


def _signed_manifests(previous: Location, policies: Sequence[Policy], signer: Ed25519PublicKey
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, Listing]]:
    """Each policy's variant manifest in ``previous``, its signature verified, and its files."""
    manifests, files = {}, {}
    for policy in policies:
        folder = previous / policy.name
        folders = locate_variant(folder)
        if folders is None or folders.rows != folder:
            raise UserInputError(f"--from {previous}: no {companion(folder).name}/{MANIFEST}")
        manifest = read_variant(folders, signer)
        shown = f"{folders.meta.name}/{MANIFEST}"  # relative to ``previous``
        if manifest.get("variant") != policy.name:
            raise ExternalSourceError(f"--from {previous}: {shown} is the manifest of another "
                                      "variant")
        if manifest["format"] != FORMAT:
            raise UserInputError(f"--from {previous}: made by an older scrub "
                                 f"({manifest['format']}); run a full build")
        files[policy.name] = listed_files(manifest, folders.manifest)
        if manifest["policy"]["sha256"] != policy.sha256:
            raise UserInputError(f"--from {previous}: policy {policy.name} changed since; run a "
                                 "full build")
        manifests[policy.name] = manifest
    if len({(m["release_id"], m["removals"]["key"]) for m in manifests.values()}) > 1:
        raise ExternalSourceError(f"--from {previous}: its variants come from different "
                                  "releases", hint="run a full build")
    return manifests, files


def _check_input_shards(previous: Location, source: Location, manifests: dict[str, dict[str, Any]],
                        record: dict[str, tuple[int, int, str]]) -> None:
    """The input shards are those every variant of ``previous`` was built from."""
    shards = discover_shards(source)
    current = {s.name: s.path.stat() for s in shards}
    for name, manifest in manifests.items():
        before = {s["name"]: s.get("size") for s in manifest["input_shards"]}
        if before != {n: st.st_size for n, st in current.items()}:
            raise UserInputError(f"--from {previous}: the input shards changed since "
                                 f"{name} was built; run a full build")
    _check_inputs(previous, shards, current, next(iter(manifests.values()))["input_shards"],
                  record)


def _check_still_applied(previous: Location, manifests: dict[str, dict[str, Any]],
                         release: ReleasePlan) -> set[int]:
    """The requests ``previous`` applied, once its list versions and requests all apply
    still (else a UserInputError: run a full build)."""
    old_lists = {(e["label"], e["sha256"]) for m in manifests.values() for e in m["lists"]}
    new_lists = {(e["label"], e["sha256"]) for e in release.lists}
    if not old_lists <= new_lists:
        gone = sorted(label for label, _ in old_lists - new_lists)
        raise UserInputError(f"--from {previous}: list version(s) {', '.join(gone)} no longer "
                             "apply; run a full build")
    old_requests = {r for m in manifests.values() for r in (m.get("ledger") or {})
                    .get("requests", [])}
    if not old_requests <= set(release.requests):
        raise UserInputError(f"--from {previous}: {len(old_requests - set(release.requests))} "
                             "request(s) applied before are no longer verified (withdrawn?); "
                             "run a full build")
    return old_requests


def carried_removals(reuse: Reuse, variant: str) -> bytes:
    """The bytes of the previous release's removal list of ``variant``, once they match its
    signed manifest (ExternalSourceError otherwise)."""
    path = companion(reuse.previous / variant) / REMOVALS
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExternalSourceError(f"{path}: cannot be read ({brief(exc)})",
                                  hint="run a full build") from None
    if hashlib.sha256(data).hexdigest() != reuse.manifests[variant]["removals"]["sha256"]:
        raise ExternalSourceError(f"{path}: sha256 differs from the previous release's signed "
                                  "manifest (changed since it was signed)",
                                  hint="run a full build, from the input")
    return data


def _check_inputs(previous: Location, shards: list[Shard], current: dict[str, Any],
                  listed: list[dict[str, Any]], record: dict[str, tuple[int, int, str]]) -> None:
    """Every input shard is the one the previous release read: recorded with its size and
    modification time, or else hashed (on threads) to its manifest's sha256."""
    hashes = {str(s["name"]): s.get("sha256") for s in listed}
    unsure = [s for s in shards
              if record.get(s.name) != (current[s.name].st_size, current[s.name].st_mtime_ns,
                                        hashes.get(s.name))]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        found = pool.map(lambda shard: fsync_and_hash(shard.path, sync=False), unsure)
        for shard, digest in zip(unsure, found, strict=True):
            if digest != hashes.get(shard.name):
                raise UserInputError(f"--from {previous}: input shard {shard.path} changed "
                                     "since the previous release (its sha256 differs); run a "
                                     "full build")


def _uses(release: ReleasePlan, policy: str, label: str) -> bool:
    variant = next(v for v in release.variants if v.policy.name == policy)
    return any(s.label == label and s.id in variant.sources for s in release.plan.sources)


def rebuild_shard(plan: MatchPlan, groups: list[frozenset[int]], reuse: Reuse,
                  task: ShardTask) -> list[VariantShardStats]:
    """Reuse the previous release's files of this shard when the new rules remove nothing
    more from it (reading only the columns they need); else build it again in full."""
    changed, previous = shard_changed(reuse, task.names, task.shard, task.overrides)
    if changed:
        return build_shard(plan, groups, task)
    return reuse_shard(reuse, task.names, task.shard, task.stage, task.embeddings, previous)


def shard_changed(reuse: Reuse, names: list[str], shard: Shard,
                  overrides: dict[str, str] | None) -> tuple[bool, Previous]:
    """Whether the new rules remove a row the previous release kept, in some variant (reading
    only the columns they need, and stopping at the first such row); with the previous states.
    """
    previous = previous_states(reuse, names, shard)
    delta, delta_groups = reuse.delta.plan, reuse.delta.groups
    if not delta.rules:
        return False, previous
    parquet = open_shard(shard)
    scores = shard_scores(delta.scores, shard, parquet.metadata.num_rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, overrides), scores)
    columns = sorted({c for c in (roles.get(r) for r in delta.required_roles()) if c is not None}
                     - {roles.get(r) for r in scores})
    offset = 0
    for index in range(parquet.metadata.num_row_groups):
        batch = parquet.read_row_group(index, columns=columns, use_threads=False)
        view = with_scores(batch, scores, offset)
        decisions = decide(delta, view, roles, groups=delta_groups)
        for (old, _), bits in zip(previous[1], decisions.group_reasons, strict=True):
            if ((bits != 0) & ~old[offset:offset + batch.num_rows]).any():
                return True, previous
        offset += batch.num_rows
    return False, previous


def previous_states(reuse: Reuse, names: list[str], shard: Shard) -> Previous:
    """The previous release's manifest entry and state (drop mask, stats) of ``shard`` in
    each variant."""
    entries = [{s["name"]: s for s in reuse.manifests[n]["shards"]}[shard.name] for n in names]
    olds = []
    for name, entry in zip(names, entries, strict=True):
        drop, stat = read_state(reuse.previous, name, shard.name, entry.get("state_tag"),
                                reuse.state_key)
        olds.append((drop, VariantShardStats.from_record(stat)))
    return entries, olds


def reuse_shard(reuse: Reuse, names: list[str], shard: Shard, stage: Location,
                emb: Location | None,
                previous: Previous) -> list[VariantShardStats]:
    """Link the previous release's files of ``shard`` (every variant's shard and embeddings,
    each checked against its signed manifest; its sealed state, checked already; its probe
    sets) into ``stage``; per variant its stats, as before."""
    stats = []
    for name, entry, (_, stat) in zip(names, *previous, strict=True):
        reuse.checked_copy(name, shard.name, stage / name / shard.name)
        if emb is not None:
            reuse.checked_copy(name, f"img_emb/{emb.name}",
                               companion(stage / name) / "img_emb" / emb.name, in_companion=True)
        target = state_path(stage, name, shard.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(state_path(reuse.previous, name, shard.name), target)
        stats.append(replace(stat, state=str(entry["state_tag"]), reused=True))
    for kind in (HOSTS, TAILS):
        probes = probe_path(reuse.previous, shard.name, kind)
        if probes.is_file():
            target = probe_path(stage, shard.name, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(probes, target)
    return stats


def skippable(reuse: Reuse, names: list[str], shard: Shard, probes: list[RuleProbe] | None,
              key: str) -> Previous | None:
    """The previous states of ``shard`` when its probe sets show that no new rule can match
    it (its files are then reused without reading it); else None."""
    if probes is None:
        return None
    previous = previous_states(reuse, names, shard)
    stat = previous[1][0][1]
    found = {kind: read_probes(reuse.previous, shard.name, key, stat.input_sha256,
                               stat.probe_tags.get(kind), kind)
             if any(getattr(rule, attr) is not None for rule in probes) else None
             for kind, attr in ((HOSTS, "hosts"), (TAILS, "tails"))}
    if not ruled_out(probes, found[HOSTS], found[TAILS]):
        return None
    return previous


def settle(reuse: Reuse, names: list[str], shards: list[Shard], stage: Location,
           source: Location,
           overrides: dict[str, str] | None, key: str, *, threads: int, read: bool,
           done: Callable[[Shard, list[VariantShardStats]], None]) -> list[Shard]:
    """Reuse the previous files of every shard that needs no rebuild, calling ``done`` for
    each; the shards left to build. Shards whose probe sets rule every new rule out are reused
    unread; with ``read`` the others are read (only the new rules' columns, on ``threads``
    threads) and reused when the new rules remove nothing more from them."""
    probes = rule_probes(reuse.delta.plan, key)

    def one(shard: Shard) -> list[VariantShardStats] | None:
        previous = skippable(reuse, names, shard, probes, key)
        if previous is None and read:
            changed, previous = shard_changed(reuse, names, shard, overrides)
            if changed:
                return None
        if previous is None:
            return None
        return reuse_shard(reuse, names, shard, stage, embedding_file(source, shard), previous)

    rest = []
    with ThreadPoolExecutor(threads) as pool:
        for shard, result in zip(shards, pool.map(one, shards), strict=True):
            if result is None:
                rest.append(shard)
            else:
                done(shard, result)
    return rest
