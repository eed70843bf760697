"""A dataset's shape before a job runs: total rows, and schemas that agree across shards."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from scrub.dataset import Shard, open_shard
from scrub.errors import InvalidDatasetError, ScrubError


def survey(shards: Sequence[Shard]) -> int:
    """Total rows of the readable shards, after checking that their schemas agree.

    A shard whose columns differ from the first readable one (missing, extra, or of another type)
    is an error naming both shards and the column. Unreadable shards are left to the workers,
    which report them by name while the others complete.
    """
    total = 0
    reference: tuple[Shard, pa.Schema] | None = None
    for shard in shards:
        try:
            metadata = open_shard(shard).metadata
        except ScrubError:
            continue
        total += metadata.num_rows
        schema = metadata.schema.to_arrow_schema()
        if reference is None:
            reference = (shard, schema)
            continue
        first, expected = reference
        problem = _schema_difference(expected, schema)
        if problem:
            raise InvalidDatasetError(
                f"{shard.path}: schema differs from {first.name}: {problem}",
                hint="every shard of a dataset must have the same columns and types")
    return total


def _schema_difference(expected: pa.Schema, actual: pa.Schema) -> str | None:
    for field in expected:
        if field.name not in actual.names:
            return f"column {field.name!r} is missing"
        other = actual.field(field.name)
        if not other.type.equals(field.type):
            return f"column {field.name!r} is {other.type}, not {field.type}"
    for name in actual.names:
        if name not in expected.names:
            return f"column {name!r} is extra"
    return None
