"""The rows of a variant's removal list: keyed hashes of what it dropped, never the values."""

from __future__ import annotations

import polars as pl
import polars_hash as plh
import pyarrow as pa

from scrub.dataset import DIGEST_WIDTHS, ColumnRoles, role_values
from scrub.keys import digest_hex
from scrub.urls import canonicalize_urls


def empty_removals() -> pa.Table:
    return pa.table({"url": pa.array([], pa.string()), "md5": pa.array([], pa.string()),
                     "sha256": pa.array([], pa.string())})


def removal_rows(dropped: pa.Table, roles: ColumnRoles, hmac_key: str) -> pa.Table:
    """Keyed hashes (HMAC-SHA256) of the dropped rows' canonical URLs and content hashes."""
    columns: dict[str, pl.Series] = {}
    n = dropped.num_rows
    url = roles.get("url")
    # the columns' values whatever their Arrow type (dictionaries, views, raw digests)
    urls = (canonicalize_urls(pl.Series(role_values(dropped.column(url), "url", url))
                              .cast(pl.String)) if url
            else pl.Series([None] * n, dtype=pl.String))
    columns["url"] = urls
    for name in ("md5", "sha256"):
        column = roles.get(name)
        values = (pl.Series(digest_hex(dropped.column(column), DIGEST_WIDTHS[name]))
                  .cast(pl.String) if column else pl.Series([None] * n, dtype=pl.String))
        columns[name] = values
    frame = pl.DataFrame(columns).select(
        plh.col(name).chash.hmac_sha256(key=hmac_key).alias(name) for name in columns)
    return frame.to_arrow()
