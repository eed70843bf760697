"""scrub's parquet writer settings: zstd, a lower level on hex-digest columns only."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.dataset import (
    DIGEST_COMPRESSION_LEVEL,
    WRITER_COMPRESSION_LEVEL,
    compression_levels,
    detect_roles,
)
from scrub.engine.filtering import open_writer
from scrub.synthetic import random_md5s


def _table(rows: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(3)
    words = np.array(["red", "dress", "vintage", "garden", "London", "shirt", "art"])
    return pa.table({
        "URL": [f"https://example.org/{i}.jpg" for i in range(rows)],
        "TEXT": [" ".join(rng.choice(words, 5)) for _ in range(rows)],
        "md5": random_md5s(rows, seed=4).astype(str),
        "checksum": random_md5s(rows, seed=5).astype(str),  # a digest scrub has no role for
        "hash": pa.array(rng.integers(0, 2**62, rows)),
    })


def test_digest_roles_get_the_digest_level_and_everything_else_the_default() -> None:
    table = _table(10)
    levels = compression_levels(table.schema)
    assert levels == {"URL": WRITER_COMPRESSION_LEVEL, "TEXT": WRITER_COMPRESSION_LEVEL,
                      "md5": DIGEST_COMPRESSION_LEVEL, "checksum": WRITER_COMPRESSION_LEVEL,
                      "hash": WRITER_COMPRESSION_LEVEL}
    assert DIGEST_COMPRESSION_LEVEL < WRITER_COMPRESSION_LEVEL
    # a column mapped to a digest role by an override is written as one
    overridden = compression_levels(table.schema,
                                    detect_roles(table.schema, {"sha256": "checksum"}))
    assert overridden["checksum"] == DIGEST_COMPRESSION_LEVEL


def test_a_numeric_column_named_like_a_digest_keeps_the_default_level() -> None:
    schema = pa.schema([("md5", pa.int64()), ("pdq", pa.large_string())])
    assert compression_levels(schema) == {"md5": WRITER_COMPRESSION_LEVEL,
                                          "pdq": DIGEST_COMPRESSION_LEVEL}


def test_the_written_file_round_trips_and_hex_is_no_larger_than_at_the_default_level() -> None:
    table = _table()
    ours = io.BytesIO()
    with open_writer(ours, table.schema) as writer:
        writer.write_table(table)
    assert pq.read_table(io.BytesIO(ours.getvalue())).equals(table)
    uniform = io.BytesIO()
    pq.write_table(table, uniform, compression="zstd", compression_level=WRITER_COMPRESSION_LEVEL,
                   use_dictionary=False)

    def column_bytes(data: bytes, name: str) -> int:
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
        index = table.column_names.index(name)
        return sum(metadata.row_group(g).column(index).total_compressed_size
                   for g in range(metadata.num_row_groups))

    # the reason for the lower level: random hex compresses no better at the default one
    assert column_bytes(ours.getvalue(), "md5") <= column_bytes(uniform.getvalue(), "md5")
    assert column_bytes(ours.getvalue(), "TEXT") == column_bytes(uniform.getvalue(), "TEXT")
