"""Datasets: shard discovery, column roles and schema checks.

A dataset is a folder of parquet shards (or one parquet file). Column roles are found from the
usual LAION / img2dataset names and can be overridden with ``role=column`` pairs; unknown columns
pass through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scrub.errors import InvalidDatasetError, UserInputError, brief

#: Candidate column names per role, in order of preference.
ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "url": ("URL", "url"),
    "caption": ("TEXT", "caption"),
    "key": ("key", "SAMPLE_ID", "uid"),
    "laion_hash": ("hash",),
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
    "pdq": ("pdq",),
    "pdq_quality": ("pdq_quality", "quality"),
    "phash": ("phash",),
    "dhash": ("dhash",),
    "punsafe": ("punsafe",),
    "pwatermark": ("pwatermark",),
    "similarity": ("similarity",),
    "width": ("WIDTH", "width"),
    "height": ("HEIGHT", "height"),
}

#: Parquet writer settings shared by every writer in scrub and by the benchmarks' baselines.
#: Dictionary encoding is off, as in polars' writer: LAION's columns are nearly all unique
#: (URLs, captions, hashes), where trying a dictionary first costs ~15% of the write time.
WRITER_COMPRESSION = "zstd"
WRITER_COMPRESSION_LEVEL = 3
WRITER_USE_DICTIONARY = False
#: zstd level for columns of hex digests (the md5 / sha1 / sha256 / pdq / phash / dhash roles).
#: Random hex leaves zstd nothing to match, only the entropy coding of 16 symbols: level 1
#: writes these columns ~2.4x faster than level 3 and ~4% smaller (measured on LAION-like
#: shards, where they are 60% of the bytes); text columns keep level 3, ~10% smaller there.
DIGEST_COMPRESSION_LEVEL = 1
DIGEST_ROLES = ("md5", "sha1", "sha256", "pdq", "phash", "dhash")
#: Rows per read batch and per written row group.
BATCH_ROWS = 128 * 1024


@dataclass(frozen=True)
class Shard:
    """One parquet shard of a dataset."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ColumnRoles:
    """Which column plays which role in a shard."""

    columns: Mapping[str, str]

    def get(self, role: str) -> str | None:
        return self.columns.get(role)

    def describe(self) -> str:
        if not self.columns:
            return "none"
        return ", ".join(f"{role}={col}" for role, col in sorted(self.columns.items()))


def discover_shards(source: Path | str) -> list[Shard]:
    """The parquet shards of a dataset folder, by name; a single file is a one-shard dataset.

    Hidden files and Spark/Hadoop markers (``_SUCCESS``, ``_metadata``) are skipped.
    """
    path = Path(source)
    if path.is_file():
        return [Shard(path)]
    if not path.is_dir():
        raise UserInputError(f"{path}: no such file or folder")
    shards = [Shard(p) for p in sorted(path.iterdir())
              if p.is_file() and p.suffix == ".parquet" and not p.name.startswith((".", "_"))]
    if not shards:
        raise UserInputError(f"{path}: no parquet shards found",
                             hint="a dataset is a folder of *.parquet files")
    return shards


def parse_role_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse ``role=column`` pairs given on the command line."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        role, sep, column = pair.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not role or not column:
            raise UserInputError(f"--column {pair!r}: expected ROLE=COLUMN")
        if role not in ROLE_CANDIDATES:
            raise UserInputError(f"--column {pair!r}: unknown role {role!r}",
                                 hint=f"roles: {', '.join(sorted(ROLE_CANDIDATES))}")
        overrides[role] = column
    return overrides


def detect_roles(schema: pa.Schema, overrides: Mapping[str, str] | None = None) -> ColumnRoles:
    """Find each role's column: exact name first, then a case-insensitive match."""
    names = list(schema.names)
    lowered = {n.lower(): n for n in reversed(names)}
    found: dict[str, str] = {}
    for role, candidates in ROLE_CANDIDATES.items():
        exact = next((c for c in candidates if c in names), None)
        loose = next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)
        if exact or loose:
            found[role] = exact or loose  # type: ignore[assignment]
    for role, column in (overrides or {}).items():
        if column not in names:
            raise InvalidDatasetError(f"--column {role}={column}: no such column",
                                      hint=f"columns: {', '.join(names)}")
        found[role] = column
    return ColumnRoles(found)


def compression_levels(schema: pa.Schema, roles: ColumnRoles | None = None) -> dict[str, int]:
    """The zstd level of each column: :data:`DIGEST_COMPRESSION_LEVEL` for string columns
    holding a digest role (``roles``, or the roles found by name), the default otherwise."""
    roles = roles or detect_roles(schema)
    digests = {roles.get(role) for role in DIGEST_ROLES} - {None}
    return {field.name: (DIGEST_COMPRESSION_LEVEL
                         if field.name in digests and (pa.types.is_string(field.type)
                                                       or pa.types.is_large_string(field.type))
                         else WRITER_COMPRESSION_LEVEL)
            for field in schema}


def open_shard(shard: Shard) -> pq.ParquetFile:
    """Open a shard's parquet footer, turning any read failure into an error naming the shard."""
    try:
        return pq.ParquetFile(shard.path)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidDatasetError(f"{shard.path}: cannot read parquet ({brief(exc)})") from exc
