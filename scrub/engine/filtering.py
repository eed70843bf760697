"""Filtering one shard: stream its batches through the kernel and write the survivors.

The output keeps the input's Arrow schema (metadata included) and row order; it is written under a
temporary name and only renamed into place by the caller once complete. Memory is bounded by one
read batch (and the input's row-group size), not by the shard.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.dataset import (
    BATCH_ROWS,
    WRITER_COMPRESSION,
    WRITER_COMPRESSION_LEVEL,
    WRITER_USE_DICTIONARY,
    Shard,
    detect_roles,
    open_shard,
)
from scrub.engine.checkpoint import input_identity
from scrub.engine.kernel import Decisions, decide
from scrub.engine.plan import MatchPlan
from scrub.engine.reasons import Reason
from scrub.engine.stats import ShardStats
from scrub.errors import InvalidDatasetError, brief


class HashingSink(io.RawIOBase):
    """A write-only file that passes bytes through and keeps their SHA-256 and count."""

    def __init__(self, target: BinaryIO) -> None:
        super().__init__()
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def open_writer(where: Path | BinaryIO, schema: pa.Schema) -> pq.ParquetWriter:
    """A parquet writer with scrub's fixed settings (shared with the benchmarks' baselines)."""
    return pq.ParquetWriter(where, schema, compression=WRITER_COMPRESSION,
                            compression_level=WRITER_COMPRESSION_LEVEL,
                            use_dictionary=WRITER_USE_DICTIONARY)


class _Tally:
    """Counts one shard's removals per reason and per source, and its unmatchable rows."""

    def __init__(self, plan: MatchPlan) -> None:
        self.labels = {s.id: s.label for s in plan.sources}
        self.by_reason: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.unmatchable: Counter[str] = Counter()

    def add(self, decisions: Decisions) -> None:
        self.unmatchable.update(decisions.unmatchable)
        for reason in Reason:
            count = int(np.count_nonzero(decisions.reasons & reason.mask))
            if count:
                self.by_reason[reason.code] += count
        for source_id, hit in decisions.sources.items():
            self.by_source[self.labels[source_id]] += int(np.count_nonzero(hit))

    def into(self, stats: ShardStats) -> None:
        stats.removed_by_reason = dict(sorted(self.by_reason.items()))
        stats.removed_by_source = dict(sorted(self.by_source.items()))
        stats.unmatchable = dict(sorted(self.unmatchable.items()))


def filter_shard(plan: MatchPlan, shard: Shard, tmp: Path, *,
                 column_overrides: Mapping[str, str] | None = None) -> ShardStats:
    """Write ``shard`` minus the rows ``plan`` drops to ``tmp`` (fsynced); return its stats.

    Raises :class:`InvalidDatasetError` naming the shard when it cannot be read or lacks a column
    the plan needs.
    """
    parquet = open_shard(shard)
    roles = detect_roles(parquet.schema_arrow, column_overrides)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(
            f"{shard.path}: no column for role(s) {', '.join(missing)} "
            f"(roles found: {roles.describe()})",
            hint="name the column with --column ROLE=NAME")
    size, mtime = input_identity(shard)
    stats = ShardStats(shard=shard.name, input_size=size, input_mtime_ns=mtime)
    tally = _Tally(plan)
    try:
        with open(tmp, "wb") as handle:
            sink = HashingSink(handle)
            with open_writer(sink, parquet.schema_arrow) as writer:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=True):
                    stats.rows_in += batch.num_rows
                    decisions = decide(plan, batch, roles)
                    if decisions.drop.any():
                        tally.add(decisions)
                        batch = batch.filter(pa.array(~decisions.drop))
                    else:
                        tally.unmatchable.update(decisions.unmatchable)
                    stats.rows_out += batch.num_rows
                    writer.write_batch(batch, row_group_size=BATCH_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, pa.ArrowException) as exc:
        raise InvalidDatasetError(f"{shard.path}: cannot process ({brief(exc)})") from exc
    stats.output_sha256 = sink.digest.hexdigest()
    stats.output_size = sink.size
    tally.into(stats)
    return stats
