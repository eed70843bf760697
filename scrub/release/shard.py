"""One shard of a release build: read once, every variant's rows written (input schema and
order), its embeddings filtered with the same masks, its removal rows, sealed state and probe
sets written under the staging folder; per variant its stats."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import atomic_path
from scrub.dataset import ColumnRoles, Shard, detect_roles, keep_rows, open_shard
from scrub.engine.attribution import AttributedRule
from scrub.engine.filtering import iter_batches, open_writer, several_reasons
from scrub.engine.kernel import decide
from scrub.engine.plan import MatchPlan
from scrub.engine.reasons import Reason
from scrub.engine.rules import BatchView
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.errors import InvalidDatasetError, StorageError, brief, from_os_error
from scrub.layout import companion
from scrub.release.hashing import HashingFile, fsync_and_hash
from scrub.release.probe import (
    HOSTS,
    TAILS,
    Probing,
    fingerprints_ok,
    host_probes,
    keyed_tails,
    tail_fingerprints,
    write_probes,
)
from scrub.release.removals import empty_removals, removal_rows
from scrub.release.state import write_state
from scrub.release.stats import VariantShardStats, source_labels

#: A ledger rule whose rows are counted per item: the rule, its sources, its item labels.
Counted = tuple[AttributedRule, frozenset[int], list[str]]


@dataclass(frozen=True)
class ShardTask:
    """What a worker needs, besides the plan, to build one shard: the variants' names, the
    shard, the staging folder, the shard's embeddings file, the removal list's HMAC key, what
    to record for incremental rebuilds, the column role overrides."""

    names: list[str]
    shard: Shard
    stage: Path
    embeddings: Path | None
    removal_key: str
    probing: Probing
    overrides: dict[str, str] | None


def embedding_file(source: Path, shard: Shard) -> Path | None:
    """``source/img_emb/img_emb_{i}.npy`` of the shard whose name ends with ``i``, if any."""
    match = re.search(r"(\d+)$", shard.path.stem)
    if match is None:
        return None
    path = source / "img_emb" / f"img_emb_{int(match.group(1))}.npy"
    return path if path.is_file() else None


def open_embeddings(path: Path, shard: Shard, rows: int) -> np.ndarray:
    """A shard's embeddings, memory-mapped, as they may be published: a (rows, dim) float16 or
    float32 array (clip-retrieval's layout) row-aligned with the shard. Anything else is an
    InvalidDatasetError naming the file, what it holds and what is expected; pickled (object)
    arrays are never loaded."""
    expected = (f"expected a .npy array of shape ({rows}, dim), float16 or float32, "
                f"row-aligned with {shard.path.name}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise InvalidDatasetError(f"{path}: not a readable .npy array of numbers (empty, "
                                  f"truncated, not .npy, or Python objects); {expected}") \
            from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise InvalidDatasetError(f"{path}: an .npz archive, not one .npy array; {expected}")
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4):
        raise InvalidDatasetError(f"{path}: dtype {str(array.dtype)[:40]}; {expected}")
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidDatasetError(f"{path}: shape {array.shape}; {expected}")
    if array.shape[0] != rows:
        raise InvalidDatasetError(f"{path} holds {array.shape[0]} embeddings but {shard.path} "
                                  f"has {rows} rows: they are not row-aligned")
    return array


def build_shard(plan: MatchPlan, groups: list[frozenset[int]],
                task: ShardTask) -> list[VariantShardStats]:
    """Every variant of one shard under ``stage/<variant>/``, and the shard's probe sets under
    ``stage`` (see :mod:`scrub.release.probe`); per variant its stats."""
    shard = task.shard
    parquet = open_shard(shard)
    rows = parquet.metadata.num_rows
    scores = shard_scores(plan.scores, shard, rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, task.overrides), scores)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(f"{shard.path}: no column for role(s) {', '.join(missing)}",
                                  hint="name the column with --column ROLE=NAME")
    embeddings = (open_embeddings(task.embeddings, shard, rows)
                  if task.embeddings is not None else None)
    stats = [VariantShardStats(shard.name, rows) for _ in groups]
    outputs = _VariantOutputs(task, parquet.schema_arrow, roles)
    survey = _ProbeSurvey(task.probing, roles)
    matcher = _BatchMatcher(plan, groups, roles, task.removal_key)
    try:
        offset = 0
        for batch in iter_batches(parquet):
            survey.batches += 1
            table = with_scores(batch, scores, offset)
            offset += batch.num_rows
            matcher.match(batch, table, stats, outputs, survey)
        outputs.finish(stats)
    except (OSError, pa.ArrowException) as exc:
        full = from_os_error(exc) if isinstance(exc, OSError) else None
        if isinstance(full, StorageError):  # the disk, not the shard: every shard would fail
            raise full from None
        raise InvalidDatasetError(f"{shard.path}: cannot process ({brief(exc)})") from exc
    finally:
        outputs.abandon()
    source_hash = fsync_and_hash(shard.path, sync=False)
    tags = survey.write(task.stage, shard.name, task.probing.key, source_hash)
    for v, name in enumerate(task.names):
        stats[v].input_sha256 = source_hash
        stats[v].probe_tags.update(tags)
        _finish_variant(stats[v], name, task, outputs, v, embeddings)
    return stats


class _VariantOutputs:
    """Each variant's shard, written under a temporary name through a hashing file, and what
    the variant kept and removed, batch by batch."""

    def __init__(self, task: ShardTask, schema: pa.Schema, roles: ColumnRoles) -> None:
        self.paths = [task.stage / name / task.shard.name for name in task.names]
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.tmps = [p.with_name(f".{p.name}.partial") for p in self.paths]
        self.sinks = [HashingFile(tmp) for tmp in self.tmps]
        # the parquet writer takes any file object with write/tell/flush/close
        self.writers = [open_writer(cast(BinaryIO, sink), schema, roles) for sink in self.sinks]
        self.keeps: list[list[np.ndarray]] = [[] for _ in task.names]
        self.removed: list[list[pa.Table]] = [[] for _ in task.names]

    def finish(self, stats: list[VariantShardStats]) -> None:
        """Close the writers; record each shard's sha256 (hashed as written: never read back)
        and move it into place."""
        for writer in self.writers:
            writer.close()
        for stat, sink, tmp, path in zip(stats, self.sinks, self.tmps, self.paths, strict=True):
            stat.sha256 = sink.finish()
            os.replace(tmp, path)

    def abandon(self) -> None:
        for sink, tmp in zip(self.sinks, self.tmps, strict=True):
            sink.abandon()
            tmp.unlink(missing_ok=True)


@dataclass
class _ProbeSurvey:
    """The hosts and URL-tail fingerprints of a shard's batches, for its probe sets."""

    probing: Probing
    roles: ColumnRoles
    batches: int = 0
    hosts: list[pl.Series] = field(default_factory=list)
    tails: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.probing.tails and self.roles.get("url") and fingerprints_ok():
            self.tails = []

    def observe(self, view: BatchView) -> None:
        if view.has_hosts():  # the rules worked out the rows' hosts: record them
            self.hosts.append(view.distinct_hosts())
        if self.tails is not None:
            self.tails.append(tail_fingerprints(pl.Series(view.column("url"))))

    def write(self, stage: Path, shard_name: str, key: str, source_hash: str) -> dict[str, str]:
        """Write the probe sets that cover every batch; their tags (kind -> tag). A host set
        only when the rules worked out the hosts of every batch (working them out for it
        alone would cost ~5% of the build)."""
        tags = {}
        if self.hosts and len(self.hosts) == self.batches:
            found = pl.concat(self.hosts)
            tags[HOSTS] = write_probes(stage, shard_name, host_probes(found, key), key,
                                       source_hash, HOSTS)
        if self.tails is not None and len(self.tails) == self.batches:
            prints = np.concatenate(self.tails) if self.tails else np.zeros(0, np.uint64)
            tags[TAILS] = write_probes(stage, shard_name, keyed_tails(prints, key), key,
                                       source_hash, TAILS)
        return tags


class _BatchMatcher:
    """Matches a batch once for every variant, writes each variant's kept rows and counts
    its removals (per reason, source and ledger item)."""

    def __init__(self, plan: MatchPlan, groups: list[frozenset[int]], roles: ColumnRoles,
                 removal_key: str) -> None:
        self.plan, self.groups, self.roles, self.removal_key = plan, groups, roles, removal_key
        self.counted: list[Counted] = [(r, frozenset(r.sources), r.item_keys)
                                       for r in plan.rules
                                       if isinstance(r, AttributedRule) and r.item_keys]
        self.labels = source_labels(plan)

    def match(self, batch: pa.Table, table: pa.Table, stats: list[VariantShardStats],
              outputs: _VariantOutputs, survey: _ProbeSurvey) -> None:
        view = BatchView(table, self.roles)
        decisions = decide(self.plan, table, self.roles, groups=self.groups, view=view)
        survey.observe(view)
        drops = [bits != 0 for bits in decisions.group_reasons]
        if self.counted:
            count_items(self.counted, view, decisions.sources, drops, self.groups, stats)
        # the removal rows (keyed hashes) of every row some variant drops, computed once
        union = np.logical_or.reduce(drops) if drops else np.zeros(batch.num_rows, bool)
        hashed = (removal_rows(keep_rows(batch, union), self.roles, self.removal_key)
                  if union.any() else None)
        for v, bits in enumerate(decisions.group_reasons):
            drop = drops[v]
            outputs.keeps[v].append(~drop)
            outputs.writers[v].write_table(keep_rows(batch, ~drop) if drop.any() else batch)
            stat = stats[v]
            stat.rows_out += int((~drop).sum())
            if not drop.any() or hashed is None:
                continue
            for reason in Reason:
                count = int(((bits & np.uint32(reason.mask)) != 0).sum())
                if count:
                    stat.by_reason[reason.code] = stat.by_reason.get(reason.code, 0) + count
            stat.several_reasons += several_reasons(bits)
            for source, mask in decisions.sources.items():
                if source in self.groups[v]:
                    label = self.labels[source]
                    stat.by_source[label] = (stat.by_source.get(label, 0)
                                             + int((mask & drop).sum()))
            outputs.removed[v].append(hashed.filter(pa.array(drop[union])))


def count_items(rules: list[Counted], view: BatchView, sources: dict[int, np.ndarray],
                drops: list[np.ndarray], groups: list[frozenset[int]],
                stats: list[VariantShardStats]) -> None:
    """Add to each variant's ``by_item`` the rows of this batch it drops, per request item
    that matches them. ``sources``: the masks of the sources that matched in this batch
    (few), so only rows a request hit are looked at."""
    if not drops:
        return
    union = np.logical_or.reduce(drops)
    for rule, members, keys in rules:
        hit = np.zeros(len(union), dtype=bool)
        for source, mask in sources.items():
            if source in members:
                hit |= mask
        hit &= union
        if not hit.any():
            continue
        pairs = rule.item_pairs(view, np.flatnonzero(hit))
        rows, owners = pairs["row"].to_numpy(), pairs["source"]
        for v, drop in enumerate(drops):
            chosen = pairs.filter(pl.Series(drop[rows]) & owners.is_in(list(groups[v])))
            by = stats[v].by_item
            for item, count in chosen.group_by("item").len().iter_rows():
                by[keys[item]] = by.get(keys[item], 0) + count


def _finish_variant(stat: VariantShardStats, name: str, task: ShardTask,
                    outputs: _VariantOutputs, v: int, embeddings: np.ndarray | None) -> None:
    """The variant's embeddings, removal rows and sealed state of the shard."""
    stage, shard_name = task.stage, task.shard.name
    if embeddings is not None and task.embeddings is not None:
        keep = np.concatenate(outputs.keeps[v]) if outputs.keeps[v] else np.ones(0, bool)
        emb_name = task.embeddings.name
        target = companion(stage / name) / "img_emb" / emb_name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.asarray(embeddings[keep]), allow_pickle=False)
            stat.embeddings = {"name": f"img_emb/{emb_name}",
                               "sha256": fsync_and_hash(tmp, sync=False)}
    removed = outputs.removed[v]
    part = pa.concat_tables(removed) if removed else empty_removals()
    with atomic_path(stage / ".removals" / name / shard_name) as tmp:
        pq.write_table(part, tmp)
    drop = ~np.concatenate(outputs.keeps[v]) if outputs.keeps[v] else np.zeros(0, bool)
    stat.state = write_state(stage, name, shard_name, drop, stat.record(), task.probing.key)
