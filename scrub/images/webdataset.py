"""``scrub apply`` on a webdataset copy: a sample the plan drops leaves the tar and the sidecar.

A shard is a sidecar ``NNNNN.parquet`` with its ``NNNNN.tar`` beside it (img2dataset's layout,
column names as it writes them). The plan runs over the sidecar's rows; image hashes the plan
needs and the sidecar lacks (``md5``, ``sha256``, ``pdq``...) are computed from the tar's images
and joined by ``key``. Hashes the sidecar has are used as they are (img2dataset hashes the bytes
it downloaded). A shard where nothing matches is linked (or copied) unchanged; a shard that
changes gets a sidecar without the dropped rows and a tar without their members, every other
member copied byte for byte in order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import pyarrow as pa

from scrub.atomic import link_or_copy
from scrub.dataset import Shard, detect_roles, open_shard
from scrub.engine.checkpoint import input_identity
from scrub.engine.filtering import Tally, open_writer
from scrub.engine.kernel import decide
from scrub.engine.plan import MatchPlan
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.engine.stats import ShardStats
from scrub.errors import InvalidDatasetError, brief
from scrub.images.hashing import CONTENT_TYPES, PIXEL_TYPES, hash_image
from scrub.images.tars import (
    TarMembers,
    group_samples,
    iter_image_bytes,
    read_members,
    rewrite_tar,
)

IMAGE_ROLES = frozenset(CONTENT_TYPES + PIXEL_TYPES)


def tar_of(shard: Shard) -> Path | None:
    """The tar beside a sidecar, if there is one."""
    tar = shard.path.with_suffix(".tar")
    return tar if tar.is_file() else None


def filter_webdataset_shard(plan: MatchPlan, shard: Shard, tmp: Path, tmp_tar: Path, *,
                            column_overrides: Mapping[str, str] | None = None
                            ) -> tuple[ShardStats, pa.Table]:
    """Write the sidecar and tar of ``shard`` minus the dropped samples to ``tmp`` and
    ``tmp_tar`` (fsynced); return the stats and the decision records (rows of the sidecar)."""
    tar = tar_of(shard)
    if tar is None:
        raise InvalidDatasetError(f"{shard.path}: no tar beside this sidecar")
    parquet = open_shard(shard)
    try:
        table = parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise InvalidDatasetError(f"{shard.path}: cannot read ({brief(exc)})") from exc
    scores = shard_scores(plan.scores, shard, table.num_rows)
    roles = scored_roles(detect_roles(table.schema, column_overrides), scores)
    members = read_members(tar)  # also proves the tar whole before anything is written
    view = with_scores(table, scores, 0)
    missing_images = sorted((plan.required_roles() & IMAGE_ROLES) - set(roles.columns))
    if missing_images:
        key_column = roles.get("key")
        if key_column is None:
            raise InvalidDatasetError(f"{shard.path}: no key column to join image hashes on",
                                      hint="name it with --column key=NAME")
        hashes = _tar_hashes(tar, members, missing_images)
        keys = pl.DataFrame({"key": pl.Series(table.column(key_column)).cast(pl.String)})
        joined = keys.join(hashes, on="key", how="left", maintain_order="left").drop("key")
        extra = {}
        for name in joined.columns:  # named as the role (e.g. md5), unless the name is taken
            column = name if name not in view.schema.names else f"{name} (from the tar)"
            view = view.append_column(column, joined[name].to_arrow())
            extra[name] = column
        roles = scored_roles(detect_roles(view.schema, {**(column_overrides or {}), **extra}),
                             scores)
    missing = sorted(plan.required_roles() - set(roles.columns))
    if missing:
        raise InvalidDatasetError(
            f"{shard.path}: no column for role(s) {', '.join(missing)} "
            f"(roles found: {roles.describe()})", hint="name the column with --column ROLE=NAME")
    size, mtime = input_identity(shard)
    stats = ShardStats(shard=shard.name, input_size=size, input_mtime_ns=mtime,
                       rows_in=table.num_rows)
    tally = Tally(plan)
    decisions = decide(plan, view, roles)
    tally.add(decisions)
    tally.into(stats)
    drop = decisions.drop
    stats.rows_out = int((~drop).sum())
    if not drop.any():
        link_or_copy(shard.path, tmp)
        link_or_copy(tar, tmp_tar)
        stats.rewritten = False
    else:
        key_column = roles.get("key")
        if key_column is None:
            raise InvalidDatasetError(f"{shard.path}: no key column to find samples in the tar",
                                      hint="name it with --column key=NAME")
        dropped = set(pl.Series(table.column(key_column)).cast(pl.String)
                      .filter(pl.Series(drop)).drop_nulls().to_list())
        with open(tmp, "wb") as handle:
            with open_writer(handle, parquet.schema_arrow, roles) as writer:
                writer.write_table(table.filter(pa.array(~drop)))
            handle.flush()
            os.fsync(handle.fileno())
        stats.tar_members_removed = rewrite_tar(tar, tmp_tar, members, dropped)
    stats.output_size = tmp.stat().st_size
    stats.tar_output_size = tmp_tar.stat().st_size
    return stats, decisions.records(0)


def _tar_hashes(tar: Path, members: TarMembers, types: list[str]) -> pl.DataFrame:
    """Hashes of each sample's first image, by key (first occurrence of a key only)."""
    columns: dict[str, list[object]] = {"key": [], **{t: [] for t in types}}
    if "pdq" in types:
        columns["pdq_quality"] = []
    for sample, data in iter_image_bytes(tar, group_samples(members)):
        if sample.repeated:
            continue
        hashed = hash_image(data, types) if data is not None else {}
        columns["key"].append(sample.key)
        for name in columns:
            if name != "key":
                columns[name].append(hashed.get(name))
    schema = {name: (pl.Int16 if name == "pdq_quality" else pl.String) for name in columns}
    return pl.DataFrame(columns, schema=schema)


