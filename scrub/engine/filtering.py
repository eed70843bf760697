"""Filtering one shard: stream its batches through the kernel and write the survivors.

The output keeps the input's Arrow schema (metadata included) and row order; it is written under a
temporary name and only renamed into place by the caller once complete. Memory is bounded by one
read batch (and the input's row-group size), not by the shard.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.dataset import (
    BATCH_ROWS,
    WRITER_COMPRESSION,
    WRITER_USE_DICTIONARY,
    ColumnRoles,
    Shard,
    check_role_types,
    compression_levels,
    detect_roles,
    keep_rows,
    open_shard,
)
from scrub.engine.entries import entries_of
from scrub.engine.kernel import Decisions, decide
from scrub.engine.plan import MatchPlan
from scrub.engine.reasons import Reason
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.engine.stats import ShardStats, input_identity
from scrub.errors import InvalidDatasetError, StorageError, brief, from_os_error
from scrub.keys import hex_to_keys
from scrub.storage.streams import UploadSlot, finish_staged, open_staged

#: Row groups up to this size are read whole; larger ones are streamed in BATCH_ROWS slices.
MAX_GROUP_ROWS = 1 << 20


def open_writer(where: Path | BinaryIO, schema: pa.Schema,
                roles: ColumnRoles | None = None) -> pq.ParquetWriter:
    """A parquet writer with scrub's fixed settings (shared with the benchmarks' baselines):
    zstd, level per column (:func:`~scrub.dataset.compression_levels`), no dictionary."""
    return pq.ParquetWriter(where, schema, compression=WRITER_COMPRESSION,
                            compression_level=compression_levels(schema, roles),
                            use_dictionary=WRITER_USE_DICTIONARY)


def iter_batches(parquet: pq.ParquetFile) -> Iterator[pa.Table]:
    """The shard in order, one row group at a time, or in slices of large row groups.

    Whole row groups read single-threaded are the fastest path (~1.7x ``iter_batches`` with
    threads on LAION-like shards); a row group of more than ``MAX_GROUP_ROWS`` is streamed in
    batches instead, so memory stays bounded whatever the input's layout.
    """
    metadata = parquet.metadata
    for index in range(metadata.num_row_groups):
        if metadata.row_group(index).num_rows <= MAX_GROUP_ROWS:
            yield parquet.read_row_group(index, use_threads=False)
        else:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[index],
                                              use_threads=False):
                yield pa.Table.from_batches([batch])


def warm_up() -> None:
    """Exercise the read, write and decode paths once on a tiny table (first calls are slow)."""
    table = pa.table({"md5": ["0" * 32] * 64, "n": list(range(64))})
    buffer = io.BytesIO()
    with open_writer(buffer, table.schema) as writer:
        writer.write_table(table, row_group_size=BATCH_ROWS)
    read_back = pq.ParquetFile(io.BytesIO(buffer.getvalue())).read_row_group(0, use_threads=False)
    keys, valid = hex_to_keys(read_back.column("md5"), 16)
    read_back.filter(pa.array(valid))


def several_reasons(reasons: np.ndarray) -> int:
    """How many rows of a reason bitmask column have more than one bit set (a bit cleared by
    ``x & (x - 1)`` leaves others)."""
    if not len(reasons):
        return 0
    return int(np.count_nonzero(reasons & (reasons - np.ones(1, reasons.dtype))))


class Tally:
    """Counts one shard's removals per reason and per source, its unmatchable rows, and
    which list entries its rows matched."""

    def __init__(self, plan: MatchPlan) -> None:
        self.plan = plan
        self.labels = {s.id: s.label for s in plan.sources}
        self.by_reason: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.unmatchable: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self.several = 0
        #: Positions of matched entries per rule (index in plan.rules) and allow rule.
        self.entries: dict[int, list[np.ndarray]] = {}
        self.allow_entries: dict[int, list[np.ndarray]] = {}

    def add(self, decisions: Decisions) -> None:
        self.unmatchable.update(decisions.unmatchable)
        if decisions.view is not None:  # entries: looked up for the rows each rule hit only
            for into, rules, masks in ((self.entries, self.plan.rules, decisions.hits),
                                       (self.allow_entries, self.plan.allow,
                                        decisions.cleared)):
                for index, mask in masks.items():
                    entries = entries_of(rules[index])
                    if entries is not None:
                        into.setdefault(index, []).append(
                            entries.matched(decisions.view, np.flatnonzero(mask)))
        present = int(np.bitwise_or.reduce(decisions.reasons)) if len(decisions.reasons) else 0
        for reason in Reason.from_mask(present):
            self.by_reason[reason.code] += int(np.count_nonzero(decisions.reasons & reason.mask))
        self.several += several_reasons(decisions.reasons)
        for source_id, hit in decisions.sources.items():
            self.by_source[self.labels[source_id]] += int(np.count_nonzero(hit))
        for source_id, count in decisions.suppressed.items():
            self.suppressed[self.labels[source_id]] += count

    def into(self, stats: ShardStats) -> None:
        stats.removed_by_reason = dict(sorted(self.by_reason.items()))
        stats.removed_by_source = dict(sorted(self.by_source.items()))
        stats.rows_with_several_reasons = self.several
        stats.unmatchable = dict(sorted(self.unmatchable.items()))
        stats.suppressed_by_source = dict(sorted(self.suppressed.items()))
        matched: dict[str, set[int]] = {}
        for into, rules in ((self.entries, self.plan.rules), (self.allow_entries,
                                                              self.plan.allow)):
            for index, found in into.items():
                rule = rules[index]
                entries = entries_of(rule)
                if entries is None:
                    continue
                ids = entries.ids(np.unique(np.concatenate(found)))
                matched.setdefault(self.labels[rule.source.id], set()).update(ids.tolist())
        stats.matched_entries = {label: sorted(ids) for label, ids in sorted(matched.items())}


def filter_shard(plan: MatchPlan, shard: Shard, tmp: Path | UploadSlot, *,
                 column_overrides: Mapping[str, str] | None = None
                 ) -> tuple[ShardStats, pa.Table]:
    """Write ``shard`` minus the rows ``plan`` drops to ``tmp`` (fsynced; or into an upload to
    object storage, completed by the commit); return its stats and
    the decision records of the dropped rows.

    Raises :class:`InvalidDatasetError` naming the shard when it cannot be read or lacks a column
    the plan needs.
    """
    parquet = open_shard(shard)
    scores = shard_scores(plan.scores, shard, parquet.metadata.num_rows)
    roles = scored_roles(detect_roles(parquet.schema_arrow, column_overrides), scores)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(
            f"{shard.path}: no column for role(s) {', '.join(missing)} "
            f"(roles found: {roles.describe()})",
            hint="name the column with --column ROLE=NAME")
    try:
        check_role_types(parquet.schema_arrow, roles,
                         plan.required_roles() | {a.key_type.target for a in plan.allow})
    except InvalidDatasetError as exc:
        raise InvalidDatasetError(f"{shard.path}: {exc.message}", hint=exc.hint) from None
    size, mtime = input_identity(shard)
    stats = ShardStats(shard=shard.name, input_size=size, input_mtime_ns=mtime)
    tally = Tally(plan)
    records: list[pa.Table] = []
    try:
        with open_staged(tmp) as handle:
            with open_writer(handle, parquet.schema_arrow, roles) as writer:
                for batch in iter_batches(parquet):
                    view = with_scores(batch, scores, stats.rows_in)
                    stats.rows_in += batch.num_rows
                    decisions = decide(plan, view, roles)
                    tally.add(decisions)
                    if decisions.drop.any():
                        records.append(decisions.records(stats.rows_in - batch.num_rows))
                        batch = keep_rows(batch, ~decisions.drop)
                    stats.rows_out += batch.num_rows
                    writer.write_table(batch, row_group_size=BATCH_ROWS)
            stats.output_size = finish_staged(handle)
    except (OSError, pa.ArrowException) as exc:
        full = from_os_error(exc, tmp) if isinstance(exc, OSError) else None
        if isinstance(full, StorageError):  # the disk, not the shard
            raise full from None
        raise InvalidDatasetError(f"{shard.path}: cannot process ({brief(exc)})") from exc
    tally.into(stats)
    return stats, (pa.concat_tables(records) if records else _no_records())


def _no_records() -> pa.Table:
    """The decision records of a shard that drops nothing (built per call, not at import: an
    Arrow table at module level would cost every importer pyarrow's pandas probe)."""
    return pa.table({"row": pa.array([], pa.int64()), "reasons": pa.array([], pa.uint32()),
                     "sources": pa.array([], pa.list_(pa.int32())),
                     "distance": pa.array([], pa.int16())})
