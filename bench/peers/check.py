"""Proof that a peer removed the same rows as scrub: shard by shard, the same ``md5`` values in
the same order."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def same_rows(reference: Path, other: Path, *, name: str, column: str = "md5") -> None:
    """Exit naming ``name`` unless every ``*.parquet`` of ``reference`` has a namesake in
    ``other`` holding the same ``column`` values in the same order (and no other shard)."""
    shards = sorted(p.name for p in reference.glob("*.parquet"))
    theirs = sorted(p.name for p in other.glob("*.parquet"))
    if shards != theirs:
        raise SystemExit(f"{name}: wrote shards {theirs}, scrub wrote {shards}")
    for shard in shards:
        ours = pl.read_parquet(reference / shard, columns=[column]).to_series()
        peer = pl.read_parquet(other / shard, columns=[column]).to_series()
        if not ours.equals(peer):
            raise SystemExit(f"{name}: {shard} keeps {len(peer):,} rows, scrub keeps "
                             f"{len(ours):,}, or in another order")
