"""Datasets: shard discovery, column roles and schema checks.

A dataset is a folder of parquet shards (or one parquet file). Column roles are found from the
usual LAION / img2dataset names and can be overridden with ``role=column`` pairs; unknown columns
pass through untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scrub.errors import InvalidDatasetError, UserInputError, brief
from scrub.layout import REMOVALS_KEY, companion, companion_of
from scrub.storage import ObjectPath, location
from scrub.storage.failures import translated

#: Where a shard lies: a local file, or an object in object storage.
ShardPath = Path | ObjectPath

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
#: (URLs, captions, hashes), where trying a dictionary first only costs write time.
WRITER_COMPRESSION = "zstd"
WRITER_COMPRESSION_LEVEL = 3
WRITER_USE_DICTIONARY = False
#: zstd level for columns of hex digests (the md5 / sha1 / sha256 / pdq / phash / dhash roles).
#: Random hex leaves zstd nothing to match, only the entropy coding of 16 symbols, so level 1
#: is faster and no larger there; text columns keep level 3. Figures: docs/design/dataset.md.
DIGEST_COMPRESSION_LEVEL = 1
DIGEST_ROLES = ("md5", "sha1", "sha256", "pdq", "phash", "dhash")
#: Rows per read batch and per written row group.
BATCH_ROWS = 128 * 1024


@dataclass(frozen=True)
class Shard:
    """One parquet shard of a dataset."""

    path: ShardPath
    #: Whether a ``.tar`` lies beside it (a webdataset shard), when the listing that found the
    #: shard already told (object storage: one request fewer per shard); None: look.
    has_tar: bool | None = None

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


def discover_shards(source: ShardPath | str) -> list[Shard]:
    """The parquet shards of a dataset folder, by name; a single file is a one-shard dataset.

    Hidden files and Spark/Hadoop markers (``_SUCCESS``, ``_metadata``) are skipped. A prefix
    in object storage (``s3://bucket/prefix``) is a folder: the objects directly under it.
    """
    path = location(source)
    if isinstance(path, ObjectPath):
        return _discover_objects(path)
    if path.is_file():
        return [Shard(path)]
    if not path.is_dir():
        raise UserInputError(f"{path}: " + ("not a regular file or folder (a FIFO, device or "
                                            "socket)" if path.exists() else
                                            "no such file or folder"))
    _refuse_companion(path)
    # The suffix in any case: a shard written as ``PART-0.PARQUET`` is a shard, not a file to
    # skip without a word.
    named = [p for p in sorted(path.iterdir())
             if p.suffix.lower() == ".parquet" and not p.name.startswith((".", "_"))]
    # Something named like a shard that is no regular file (a folder of parts, a FIFO, a
    # broken link) is refused before anything reads it: skipping it would leave its rows
    # unscrubbed without a word, and reading a FIFO would never end.
    odd = next((p for p in named if not p.is_file()), None)
    if odd is not None:
        raise InvalidDatasetError(f"{odd}: named like a shard but not a regular file (a "
                                  "folder, FIFO, device or broken link)",
                                  hint="a dataset is a flat folder of *.parquet files")
    named = [p for p in named if not _release_removal_list(p)]
    shards = [Shard(p) for p in named]
    if not shards:
        raise UserInputError(f"{path}: no parquet shards found",
                             hint=_release_hint(path) or "a dataset is a folder of *.parquet "
                             "files")
    return shards


def _discover_objects(path: ObjectPath) -> list[Shard]:
    """:func:`discover_shards` of a prefix in object storage (one listing request per
    thousand objects): the bucket must exist; an object is a one-shard dataset."""
    from scrub.storage.filesystems import bucket_exists

    if not bucket_exists(path):
        raise UserInputError(f"{path}: no such bucket", hint="check the location's spelling")
    if path.key and path.is_file():
        return [Shard(path)]
    _refuse_companion(path)
    listed = path.list_children()
    named = [p for p, _ in listed
             if p.suffix.lower() == ".parquet" and not p.name.startswith((".", "_"))]
    # a prefix named like a shard, even beside an object of that very name (listed twice)
    prefixes = {p for p, is_object in listed if not is_object}
    odd = next((p for p in named if p in prefixes), None)
    if odd is not None:
        raise InvalidDatasetError(f"{odd}: named like a shard but a prefix holding objects, "
                                  "not an object", hint="a dataset is a flat prefix of "
                                  "*.parquet objects")
    named = [p for p in named if not _release_removal_list(p)]
    if not named:
        raise UserInputError(f"{path}: no parquet shards found",
                             hint=_release_hint(path) or "a dataset is a prefix of *.parquet "
                             "objects")
    tars = {p.name for p, _ in listed if p.suffix == ".tar"}
    return [Shard(p, has_tar=p.with_suffix(".tar").name in tars) for p in named]


def _refuse_companion(path: ShardPath) -> None:
    """A companion folder (``X.scrub``: a report, job state, a release's manifest and removal
    list) is no dataset: UserInputError naming the folder to give instead."""
    rows = companion_of(path)
    if rows is not None and any((path / name).is_file() for name in ("manifest.json",
                                                                   "job.json")):
        raise UserInputError(f"{path}: the companion folder of {rows} (its manifest, report "
                             "or job state), not a dataset", hint=f"give {rows}")


def _release_removal_list(path: ShardPath) -> bool:
    """Whether ``path`` is the removal list a release of format 1 or 2 kept beside its shards
    (``removals.parquet`` beside ``manifest.json``, marked as a removal list and holding its
    three columns of keyed hashes only): no shard of it."""
    if path.name != "removals.parquet" or not (path.parent / "manifest.json").is_file():
        return False
    try:
        schema = open_parquet(path).schema_arrow
    except (OSError, pa.ArrowException, InvalidDatasetError):
        return False
    return REMOVALS_KEY in (schema.metadata or {}) and sorted(schema.names) == [
        "md5", "sha256", "url"]


def _release_hint(path: ShardPath) -> str | None:
    """For a release folder (what ``scrub release build`` wrote): which folder to give."""
    variants = sorted(p.name for p in path.iterdir()
                      if p.is_dir() and not p.is_symlink() and companion_of(p) is None
                      and ((companion(p) / "manifest.json").is_file()
                           or (p / "manifest.json").is_file()))
    if not variants:
        return None
    return (f"{path} holds a release: give one of its variant folders "
            f"({', '.join(str(path / v) for v in variants)})")


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
    """Find each role's column: exact name first, then a case-insensitive match.

    Two columns of one name are an error (see :func:`duplicate_columns`)."""
    names = list(schema.names)
    problem = duplicate_columns(names)
    if problem:
        raise InvalidDatasetError(problem, hint="give every column of a shard its own name")
    lowered = {n.lower(): n for n in reversed(names)}
    found: dict[str, str] = {}
    for role, candidates in ROLE_CANDIDATES.items():
        exact = next((c for c in candidates if c in names), None)
        loose = next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)
        column = exact or loose
        if column:
            found[role] = column
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
                         if field.name in digests and _is_text(field.type)
                         else WRITER_COMPRESSION_LEVEL)
            for field in schema}


def open_shard(shard: Shard) -> pq.ParquetFile:
    """Open a shard's parquet footer, turning any read failure into an error naming the shard.

    A shard with two columns of one name is refused: which of them plays a role (and is
    matched) would be a guess, and readers of the output choke on it.
    """
    parquet = open_parquet(shard.path)
    names = parquet.schema_arrow.names
    problem = duplicate_columns(names)
    if problem:
        raise InvalidDatasetError(f"{shard.path}: {problem}",
                                  hint="give every column of a shard its own name")
    return parquet


def open_parquet(path: ShardPath) -> pq.ParquetFile:
    """A parquet file's footer, locally or in object storage (ranged reads, each row group's
    column chunks fetched together), or an InvalidDatasetError naming the file."""
    try:
        if isinstance(path, ObjectPath):
            with translated(path):
                return pq.ParquetFile(path.open("rb"), pre_buffer=True)
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidDatasetError(f"{path}: cannot read parquet ({brief(exc)})") from exc


def duplicate_columns(names: list[str]) -> str | None:
    """What is wrong when some column names repeat (None when every name is unique)."""
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if not repeated:
        return None
    return "more than one column is named " + ", ".join(repr(n) for n in repeated)


#: Bytes in the binary form of each digest role (hex text holds twice as many digits).
DIGEST_WIDTHS = {"md5": 16, "sha1": 20, "sha256": 32, "pdq": 32, "phash": 8, "dhash": 8}
#: Roles holding text (read as UTF-8 when stored as bytes).
TEXT_ROLES = ("url", "caption")
#: Roles holding numbers (numbers written as text are parsed; what does not parse is counted).
NUMBER_ROLES = ("pdq_quality", "punsafe", "pwatermark", "similarity", "width", "height")


def _is_text(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_string_view(dtype))


def _is_bytes(dtype: pa.DataType) -> bool:
    return (pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)
            or pa.types.is_binary_view(dtype))


def role_type_problem(role: str, dtype: pa.DataType) -> str | None:
    """Why a column of Arrow type ``dtype`` cannot hold ``role``'s values, or None when it can.

    Dictionary columns (pandas' categoricals) are judged by their values. Digests may be hex
    text (any string type, or bytes), raw digests (bytes, ``fixed_size_binary`` of the digest's
    width) or, for 64-bit digests (pHash, dHash), 64-bit integers; URLs and captions are text
    (or UTF-8 bytes); keys text or integers; LAION's hash a 64-bit integer or decimal text.
    Roles not named here (scores joined by scrub) are not checked.
    """
    value = dtype.value_type if pa.types.is_dictionary(dtype) else dtype
    if pa.types.is_null(value):
        return "holds no values (null type)"
    if role in DIGEST_WIDTHS:
        return _digest_type_problem(role, value)
    if role in TEXT_ROLES:
        return None if _is_text(value) or _is_bytes(value) else "cannot hold text"
    if role == "key":
        if _is_text(value) or _is_bytes(value) or pa.types.is_integer(value):
            return None
        return "cannot hold sample keys (text or integers)"
    if role == "laion_hash":
        if _is_text(value) or (pa.types.is_integer(value) and value.bit_width == 64):
            return None
        return "cannot hold LAION's 64-bit hash (int64, or decimal text)"
    if role in NUMBER_ROLES:
        if (pa.types.is_integer(value) or pa.types.is_floating(value)
                or pa.types.is_decimal(value) or _is_text(value)):
            return None
        return "cannot hold numbers"
    return None


def _digest_type_problem(role: str, value: pa.DataType) -> str | None:
    """Why ``value`` (a dictionary's value type already unwrapped) cannot hold ``role``'s
    digests, or None when it can (see :func:`role_type_problem`)."""
    width = DIGEST_WIDTHS[role]
    if _is_text(value) or _is_bytes(value):
        return None
    if pa.types.is_fixed_size_binary(value) and value.byte_width in (width, 2 * width):
        return None
    if width == 8 and pa.types.is_integer(value) and value.bit_width == 64:
        return None
    return (f"cannot hold {role} digests ({width} bytes: hex text, bytes or "
            f"fixed_size_binary({width}))")


def check_role_types(schema: pa.Schema, roles: ColumnRoles, needed: Iterable[str]) -> None:
    """Raise :class:`InvalidDatasetError` naming the column, its role and its Arrow type when
    the column of one of the ``needed`` roles cannot hold that role's values (see
    :func:`role_type_problem`). Roles without a column are left to the caller."""
    for role in sorted(set(needed)):
        name = roles.get(role)
        if name is None or name not in schema.names:
            continue
        dtype = schema.field(name).type
        problem = role_type_problem(role, dtype)
        if problem:
            raise InvalidDatasetError(
                f"column {name!r} (role {role}) is of type {dtype}, which {problem}",
                hint="store it as one of those types, or name another column with "
                     "--column ROLE=NAME")


def role_values(column: pa.Array | pa.ChunkedArray, role: str, name: str) -> pa.Array:
    """A role's column as its values in a plain Arrow form: one chunk, dictionaries decoded,
    view types as their large counterparts, text stored as bytes decoded as UTF-8, 64-bit
    unsigned LAION hashes as the signed integers of the same bits. Digest columns keep their
    binary forms (see :func:`scrub.keys.digest_keys`).

    Raises :class:`InvalidDatasetError` naming the column when its type cannot hold the
    role's values or its bytes are not UTF-8 text where text is expected.
    """
    problem = role_type_problem(role, column.type)
    if problem:
        raise InvalidDatasetError(
            f"column {name!r} (role {role}) is of type {column.type}, which {problem}",
            hint="store it as one of those types, or name another column with "
                 "--column ROLE=NAME")
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        if pa.types.is_dictionary(array.type):
            array = pc.cast(array, array.type.value_type)
        if pa.types.is_string_view(array.type):
            array = pc.cast(array, pa.large_string())
        elif pa.types.is_binary_view(array.type):
            array = pc.cast(array, pa.large_binary())
        if role not in DIGEST_WIDTHS and _is_bytes(array.type):
            array = pc.cast(array, pa.large_string()
                            if pa.types.is_large_binary(array.type) else pa.string())
        if role == "laion_hash" and pa.types.is_uint64(array.type):
            array = pc.cast(array, pa.int64(), safe=False)  # the same 64 bits
    except pa.ArrowInvalid as exc:
        raise InvalidDatasetError(f"column {name!r} (role {role}) holds bytes that are not "
                                  "UTF-8 text", hint="store text as UTF-8 strings") from exc
    return array


def _has_view(dtype: pa.DataType) -> bool:
    if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
        return True
    if pa.types.is_dictionary(dtype):
        return _has_view(dtype.value_type)
    return any(_has_view(dtype.field(i).type) for i in range(dtype.num_fields))


def _without_views(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with every string/binary view inside it as its large counterpart."""
    if pa.types.is_string_view(dtype):
        return pa.large_string()
    if pa.types.is_binary_view(dtype):
        return pa.large_binary()
    if pa.types.is_dictionary(dtype):
        return pa.dictionary(dtype.index_type, _without_views(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(_without_views(f.type)) for f in dtype])
    if pa.types.is_large_list(dtype):
        return pa.large_list(dtype.value_field.with_type(_without_views(dtype.value_type)))
    if pa.types.is_fixed_size_list(dtype):
        return pa.list_(dtype.value_field.with_type(_without_views(dtype.value_type)),
                        dtype.list_size)
    if pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_without_views(dtype.value_type)))
    if pa.types.is_map(dtype):
        return pa.map_(dtype.key_field.with_type(_without_views(dtype.key_type)),
                       dtype.item_field.with_type(_without_views(dtype.item_type)))
    return dtype


def keep_rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of ``table`` where ``keep`` is True, in order, with the same schema.

    Arrow has no filter kernel for string and binary views: columns holding them are filtered
    in their large form and cast back, so shards written with views keep their types.
    """
    mask = pa.array(keep, type=pa.bool_())
    if not any(_has_view(field.type) for field in table.schema):
        return table.filter(mask)
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if _has_view(field.type):
            plain = pc.cast(column, _without_views(field.type)).filter(mask)
            columns.append(pc.cast(plain, field.type))
        else:
            columns.append(column.filter(mask))
    return pa.Table.from_arrays(columns, schema=table.schema)
