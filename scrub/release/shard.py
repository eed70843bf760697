"""One shard of a release build: read once, every variant's rows written (input schema and
order), its embeddings filtered with the same masks, its removal rows, sealed state and probe
sets written under the staging folder; per variant its stats.

An input or OUT in object storage: the shard is read in ranged requests, its embeddings copied
to a local file to be memory-mapped, and each file written locally (unsynced), then uploaded
whole under its final name."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import atomic_path, publish_file
from scrub.dataset import ColumnRoles, Shard, detect_roles, keep_rows, open_shard
from scrub.engine.attribution import AttributedRule
from scrub.engine.entries import entries_of
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
from scrub.release.staging import Location, removal_parts
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
    stage: Location
    embeddings: Location | None
    removal_key: str
    probing: Probing
    overrides: dict[str, str] | None


def embedding_file(source: Location, shard: Shard) -> Location | None:
    """``source/img_emb/img_emb_{i}.npy`` of the shard whose name ends with ``i``, if any."""
    match = re.search(r"(\d+)$", shard.path.stem)
    if match is None:
        return None
    path = source / "img_emb" / f"img_emb_{int(match.group(1))}.npy"
    return path if path.is_file() else None


def open_embeddings(path: Path, shard: Shard, rows: int, *,
                    shown: Location | None = None) -> np.ndarray:
    """A shard's embeddings, memory-mapped, as they may be published: a (rows, dim) float16 or
    float32 array (clip-retrieval's layout) row-aligned with the shard. Anything else is an
    InvalidDatasetError naming the file (``shown``, where ``path`` is its local copy), what it
    holds and what is expected; pickled (object) arrays are never loaded."""
    shown = shown if shown is not None else path
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise InvalidDatasetError(f"{shown}: not a readable .npy array of numbers (empty, "
                                  "truncated, not .npy, or Python objects); "
                                  f"{_expected(shard, rows)}") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise InvalidDatasetError(f"{shown}: an .npz archive, not one .npy array; "
                                  f"{_expected(shard, rows)}")
    _check_array(shown, array.dtype, array.shape, shard, rows)
    return array


def _expected(shard: Shard, rows: int) -> str:
    return (f"expected a .npy array of shape ({rows}, dim), float16 or float32, "
            f"row-aligned with {shard.path.name}")


def _check_array(shown: Location, dtype: np.dtype, shape: tuple[int, ...], shard: Shard,
                 rows: int) -> None:
    """Embeddings of this type and shape may be published with ``shard`` (else the error)."""
    expected = _expected(shard, rows)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4):
        raise InvalidDatasetError(f"{shown}: dtype {str(dtype)[:40]}; {expected}")
    if len(shape) != 2 or shape[1] == 0:
        raise InvalidDatasetError(f"{shown}: shape {shape}; {expected}")
    if shape[0] != rows:
        raise InvalidDatasetError(f"{shown} holds {shape[0]} embeddings but {shard.path} "
                                  f"has {rows} rows: they are not row-aligned")


def check_embeddings(path: Location, shard: Shard, rows: int) -> None:
    """:func:`open_embeddings`'s checks before a build; for an object in object storage from
    its header and size alone (a few ranged reads, not the whole array)."""
    if isinstance(path, Path):
        open_embeddings(path, shard, rows)
        return
    unreadable = InvalidDatasetError(f"{path}: not a readable .npy array of numbers (empty, "
                                     "truncated, not .npy, or Python objects); "
                                     f"{_expected(shard, rows)}")
    with path.open("rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise InvalidDatasetError(f"{path}: an .npz archive, not one .npy array; "
                                      f"{_expected(shard, rows)}")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(handle)
            size = handle.size()
        except (OSError, ValueError, EOFError):
            raise unreadable from None
        if dtype.hasobject:
            raise unreadable
        _check_array(path, dtype, shape, shard, rows)
        if handle.tell() + int(np.prod(shape)) * dtype.itemsize > size:
            raise unreadable


@contextlib.contextmanager
def local_copy(path: Location | None) -> Iterator[Path | None]:
    """``path`` as a local file: itself, or a temporary copy of an object (read in blocks),
    removed when the block ends."""
    if path is None or isinstance(path, Path):
        yield path
        return
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial")
    copy = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 22)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def build_shard(plan: MatchPlan, groups: list[frozenset[int]],
                task: ShardTask) -> list[VariantShardStats]:
    """Every variant of one shard under ``stage/<variant>/``, and the shard's probe sets under
    ``stage`` (see :mod:`scrub.release.probe`); per variant its stats."""
    with local_copy(task.embeddings) as embeddings:
        return _build_shard(plan, groups, task, embeddings)


def _build_shard(plan: MatchPlan, groups: list[frozenset[int]], task: ShardTask,
                 local_embeddings: Path | None) -> list[VariantShardStats]:
    """:func:`build_shard`, the shard's embeddings read from ``local_embeddings``."""
    shard = task.shard
    parquet = open_shard(shard)
    rows = parquet.metadata.num_rows
    scores = shard_scores(plan.scores, shard, rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, task.overrides), scores)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(f"{shard.path}: no column for role(s) {', '.join(missing)}",
                                  hint="name the column with --column ROLE=NAME")
    embeddings = (open_embeddings(local_embeddings, shard, rows, shown=task.embeddings)
                  if local_embeddings is not None else None)
    stats = [VariantShardStats(shard.name, rows, by_combination={}) for _ in groups]
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
    matcher.entries_into(stats)
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
        # in object storage: a local file, unsynced (the upload makes the object durable)
        local = all(isinstance(p, Path) for p in self.paths)
        self.tmps = [p.with_name(f".{p.name}.partial") if isinstance(p, Path)
                     else _local_partial(p.name) for p in self.paths]
        self.sinks = [HashingFile(tmp, sync=local) for tmp in self.tmps]
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
            publish_file(tmp, path)  # a rename, or an upload

    def abandon(self) -> None:
        """Close and remove every partial file, each whatever the others do (on a full disk
        closing one fails again: its rows must still go)."""
        for sink, tmp in zip(self.sinks, self.tmps, strict=True):
            with contextlib.suppress(OSError):
                sink.abandon()
            tmp.unlink(missing_ok=True)


def _local_partial(name: str) -> Path:
    """A new local temporary file for an object ``name`` being written."""
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial")
    os.close(fd)
    return Path(path)


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

    def write(self, stage: Location, shard_name: str, key: str,
              source_hash: str) -> dict[str, str]:
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
        #: Positions of the list entries some row matched, per rule (index in plan.rules).
        self.entries: dict[int, list[np.ndarray]] = {}

    def match(self, batch: pa.Table, table: pa.Table, stats: list[VariantShardStats],
              outputs: _VariantOutputs, survey: _ProbeSurvey) -> None:
        view = BatchView(table, self.roles)
        decisions = decide(self.plan, table, self.roles, groups=self.groups, view=view)
        survey.observe(view)
        for index, mask in decisions.hits.items():  # looked up for the rows a rule hit only
            entries = entries_of(self.plan.rules[index])
            if entries is not None:
                self.entries.setdefault(index, []).append(
                    entries.matched(view, np.flatnonzero(mask)))
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
            _count_combinations(stat, bits[drop])
            for source, mask in decisions.sources.items():
                if source in self.groups[v]:
                    label = self.labels[source]
                    stat.by_source[label] = (stat.by_source.get(label, 0)
                                             + int((mask & drop).sum()))
            outputs.removed[v].append(hashed.filter(pa.array(drop[union])))


    def entries_into(self, stats: list[VariantShardStats]) -> None:
        """Each variant's ``matched_entries``: the keyed ids of the entries of its lists that
        rows of this shard matched (the audit counts the entries that matched nothing)."""
        matched: dict[int, set[int]] = {}
        for index, found in self.entries.items():
            rule = self.plan.rules[index]
            entries = entries_of(rule)
            if entries is not None:
                ids = entries.ids(np.unique(np.concatenate(found)))
                matched.setdefault(rule.source.id, set()).update(int(i) for i in ids)
        for stat, group in zip(stats, self.groups, strict=True):
            stat.matched_entries = {self.labels[source]: sorted(ids)
                                    for source, ids in sorted(matched.items())
                                    if source in group}


def _count_combinations(stat: VariantShardStats, bits: np.ndarray) -> None:
    """Add the removed rows' reason bitmasks ``bits`` to ``stat.by_combination`` as
    ``code+code`` (codes sorted): how reasons combine, for the audit."""
    combined = stat.by_combination if stat.by_combination is not None else {}
    values, counts = np.unique(bits, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        key = "+".join(sorted(r.code for r in Reason.from_mask(int(value))))
        combined[key] = combined.get(key, 0) + int(count)
    stat.by_combination = combined


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
    with atomic_path(removal_parts(stage) / name / shard_name) as tmp:
        pq.write_table(part, tmp)
    drop = ~np.concatenate(outputs.keeps[v]) if outputs.keeps[v] else np.zeros(0, bool)
    stat.state = write_state(stage, name, shard_name, drop, stat.record(), task.probing.key)
