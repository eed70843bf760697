"""Reading a release's removal list (a keyed list of what a release removed), for matching
derivative copies with ``scrub apply``. Written by :mod:`scrub.release`; read here so that the
engine's plan needs no release code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.layout import REMOVALS_KEY


def removal_keys(path: Path) -> str | None:
    """The HMAC key of a removal list, or None when ``path`` is not one."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    key = metadata.get(REMOVALS_KEY)
    return key.decode() if key else None


def removal_sets(path: Path) -> dict[str, Sequence[str]]:
    """The keyed digests of a removal list, per column (nulls and repeats left out)."""
    table = pl.read_parquet(path)
    return {name: table[name].drop_nulls().unique().to_list() for name in table.columns}
