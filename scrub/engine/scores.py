"""Scores kept beside a dataset (``scrub nsfw rescore`` output) joined to its shards.

A plan names, per role, a folder holding one parquet per shard, same file name, whose
``punsafe`` column is row-aligned with the shard. Rules then read that role like any column
(e.g. ``ScoreRule("punsafe_rescored", 0.45, ...)``), so a policy chooses which score it trusts:
the shard's own ``punsafe`` or the rescored one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scrub.dataset import ColumnRoles, Shard
from scrub.errors import InvalidDatasetError, brief

#: The role of rescored ``punsafe`` values.
RESCORED = "punsafe_rescored"


def shard_scores(folders: dict[str, str], shard: Shard, rows: int) -> dict[str, pa.Array]:
    """Role -> the shard's scores (float, row-aligned), or an error naming both files."""
    out: dict[str, pa.Array] = {}
    for role, folder in sorted(folders.items()):
        path = Path(folder) / shard.name
        if not path.is_file():
            raise InvalidDatasetError(f"{shard.path}: no scores for this shard at {path}",
                                      hint="rescore it with `scrub nsfw rescore`")
        try:
            table = pq.read_table(path, columns=["punsafe"])
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise InvalidDatasetError(f"{path}: cannot read a punsafe column "
                                      f"({brief(exc)})") from exc
        if table.num_rows != rows:
            raise InvalidDatasetError(f"{path} holds {table.num_rows} scores but {shard.path} "
                                      f"has {rows} rows: they are not row-aligned")
        out[role] = table.column(0).combine_chunks()
    return out


def scored_roles(roles: ColumnRoles, scores: dict[str, pa.Array]) -> ColumnRoles:
    """``roles`` plus the score roles, named as :func:`with_scores` appends them (names that
    cannot clash with a shard's own)."""
    return ColumnRoles({**roles.columns, **{role: _name(role) for role in scores}})


def with_scores(batch: pa.Table, scores: dict[str, pa.Array], offset: int) -> pa.Table:
    """``batch`` (rows ``offset``... of its shard) with the score columns appended."""
    for role, values in scores.items():
        batch = batch.append_column(_name(role), values.slice(offset, batch.num_rows))
    return batch


def _name(role: str) -> str:
    return f"{role} (scrub)"
