"""``scrub apply`` on a webdataset copy: a sample the plan drops leaves the tar and the sidecar.

A shard is a sidecar ``NNNNN.parquet`` with its ``NNNNN.tar`` beside it (img2dataset's layout,
column names as it writes them). The plan's rules run over the sidecar's rows (its own hash
columns included), and its image-hash rules also run over every image member of the tar on its
own, whatever its name: a member in a folder, named ``./k.jpg``, repeating a key, a second image
of a sample, or without a sidecar row is hashed and matched like any other. A sample (the members
of one normalised key) is dropped whole when any of its members matches or its sidecar row is
dropped; a tar sample belongs to the sidecar row of the same key, or of its last path part
(``imgs/k`` to ``k``). A shard where nothing matches is linked (or copied) unchanged; a shard
that changes gets a sidecar without the dropped rows and a tar without their samples, every
other member copied byte for byte in order.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.atomic import link_or_copy
from scrub.dataset import ColumnRoles, Shard, detect_roles, keep_rows, open_shard
from scrub.engine.checkpoint import input_identity
from scrub.engine.filtering import Tally, open_writer
from scrub.engine.kernel import Decisions, decide
from scrub.engine.plan import MatchPlan
from scrub.engine.rules import BatchView, Rule
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.engine.stats import ShardStats
from scrub.errors import InvalidDatasetError, brief
from scrub.images.hashing import CONTENT_TYPES, HASH_TYPES, PIXEL_TYPES, hash_image
from scrub.images.tars import (
    TarMembers,
    image_members,
    normal_paths,
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
    ``tmp_tar`` (fsynced); return the stats and the decision records (rows of the sidecar).

    Tar samples dropped that have no sidecar row are counted per reason and source with the
    rows (they have no decision record: there is no row to name)."""
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
    members = read_members(tar)  # proves the tar whole and plainly laid out before any write
    view = with_scores(table, scores, 0)
    present = set(roles.columns)
    tar_rules = [r for r in plan.rules if r.roles and set(r.roles) <= IMAGE_ROLES]
    row_rules = [r for r in plan.rules if set(r.roles) <= present]
    image_rule_ids = {id(r) for r in tar_rules}
    missing = sorted({role for r in plan.rules if id(r) not in image_rule_ids
                      for role in r.roles} - present)
    if missing:
        raise InvalidDatasetError(
            f"{shard.path}: no column for role(s) {', '.join(missing)} "
            f"(roles found: {roles.describe()})", hint="name the column with --column ROLE=NAME")
    key_column = roles.get("key")
    if key_column is None and tar_rules:
        raise InvalidDatasetError(f"{shard.path}: no key column to join image hashes on",
                                  hint="name it with --column key=NAME")
    size, mtime = input_identity(shard)
    stats = ShardStats(shard=shard.name, input_size=size, input_mtime_ns=mtime,
                       rows_in=table.num_rows)
    tally = Tally(plan)
    decisions = decide(_only(plan, row_rules), view, roles)
    sidecar_keys = (normal_paths(pl.Series(table.column(key_column)).cast(pl.String))
                    if key_column is not None else None)
    tar_keys = members.keys()
    matched_keys = pl.Series([], dtype=pl.String)
    if tar_rules and sidecar_keys is not None:
        images = image_members(tar, members)
        found = decide(_only(plan, tar_rules), *_member_view(tar, members, images, tar_rules))
        image_keys = tar_keys.gather(images) if len(images) else pl.Series([], dtype=pl.String)
        decisions, orphans = _merge(decisions, found, image_keys, sidecar_keys)
        # the members' own tally: what they could not match and which entries they hit, but
        # no removals (those are counted once, on the rows and the samples without a row)
        tally.add(dataclasses.replace(found, reasons=np.zeros_like(found.reasons), sources={},
                                      suppressed={}, distance=None))
        tally.add(orphans)
        matched_keys = image_keys.filter(pl.Series(found.drop)).unique()
    tally.add(decisions)
    tally.into(stats)
    drop = decisions.drop
    stats.rows_out = int((~drop).sum())
    dropped_keys = (sidecar_keys.filter(pl.Series(drop)).drop_nulls().unique()
                    if sidecar_keys is not None else pl.Series([], dtype=pl.String))
    linked = (tar_keys.is_in(dropped_keys.implode())
              | _last_part(tar_keys).is_in(dropped_keys.implode())).to_numpy()
    drop_samples = set(tar_keys.filter(pl.Series(linked)).to_list()) | set(matched_keys.to_list())
    if not drop.any() and not drop_samples:
        link_or_copy(shard.path, tmp)
        link_or_copy(tar, tmp_tar)
        stats.rewritten = False
    else:
        if key_column is None:
            raise InvalidDatasetError(f"{shard.path}: no key column to find samples in the tar",
                                      hint="name it with --column key=NAME")
        with open(tmp, "wb") as handle:
            with open_writer(handle, parquet.schema_arrow, roles) as writer:
                writer.write_table(keep_rows(table, ~drop))
            handle.flush()
            os.fsync(handle.fileno())
        stats.tar_members_removed = rewrite_tar(tar, tmp_tar, members, drop_samples)
    stats.output_size = tmp.stat().st_size
    stats.tar_output_size = tmp_tar.stat().st_size
    return stats, decisions.records(0)


def _only(plan: MatchPlan, rules: list[Rule]) -> MatchPlan:
    """``plan`` with only ``rules`` active: the others stay in place as rules that match
    nothing, so a rule keeps its index in ``plan.rules`` (what decisions and tallies name)."""
    active = {id(rule) for rule in rules}
    return MatchPlan(sources=plan.sources, allow=plan.allow, scores=plan.scores,
                     rules=[rule if id(rule) in active else _Inactive(rule)
                            for rule in plan.rules])


class _Inactive(Rule):
    """A rule left out of one pass: it reads no column and matches no row."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.reason, rule.source)
        self.rule = rule

    @property
    def roles(self) -> tuple[str, ...]:
        return ()

    def match(self, view: BatchView) -> np.ndarray:
        return np.zeros(view.num_rows, dtype=bool)

    def describe(self) -> dict[str, object]:
        return {"kind": "inactive", "rule": self.rule.describe()}


def _last_part(keys: pl.Series) -> pl.Series:
    return keys.str.split("/").list.last()


def _member_view(tar: Path, members: TarMembers, images: np.ndarray, rules: list[Rule]
                 ) -> tuple[pa.Table, ColumnRoles]:
    """One row per image member with the hashes the rules read (``md5 (tar member)``...), and
    the roles naming them. A hash that cannot be computed (an undecodable or oversized image)
    is null, so the rules count it as unmatchable."""
    needed = {role for rule in rules for role in rule.roles}
    types = [t for t in HASH_TYPES if t in needed]
    columns: dict[str, list[object]] = {t: [] for t in types}
    if "pdq" in types:
        columns["pdq_quality"] = []
    if len(images):
        try:
            with open(tar, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                      access=mmap.ACCESS_READ) as data:
                for index in images.tolist():
                    start = int(members.offset_data[index])
                    hashed = hash_image(data[start: start + int(members.size[index])], types)
                    for name, values in columns.items():
                        values.append(hashed.get(name))
        except OSError as exc:
            raise InvalidDatasetError(f"{tar}: cannot read ({brief(exc)})") from exc
    names = {name: f"{name} (tar member)" for name in columns}
    table = pa.table({names[name]: pa.array(values, type=pa.int16() if name == "pdq_quality"
                                            else pa.string())
                      for name, values in columns.items()})
    return table, ColumnRoles(names)


def _merge(rows: Decisions, found: Decisions, image_keys: pl.Series,
           sidecar_keys: pl.Series) -> tuple[Decisions, Decisions]:
    """The sidecar rows' decisions with the matches of their samples' image members added (a
    member belongs to the rows of its key, or of its key's last path part), and the decisions
    on the samples that have no row (one entry per such key)."""
    members = pl.DataFrame({"member": np.arange(len(image_keys), dtype=np.int64),
                            "key": image_keys, "part": _last_part(image_keys)})
    sidecar = pl.DataFrame({"row": np.arange(len(sidecar_keys), dtype=np.int64),
                            "key": sidecar_keys})
    pairs = pl.concat([members.join(sidecar, on="key").select("member", "row"),
                       members.join(sidecar, left_on="part", right_on="key")
                       .select("member", "row")]).unique()
    pm, pr = pairs["member"].to_numpy(), pairs["row"].to_numpy()
    reasons = rows.reasons.copy()
    np.bitwise_or.at(reasons, pr, found.reasons[pm])
    sources = dict(rows.sources)
    for source_id, mask in found.sources.items():
        hit = np.zeros(len(reasons), dtype=bool)
        hit[pr[mask[pm]]] = True
        sources[source_id] = hit | sources[source_id] if source_id in sources else hit
    distance = rows.distance
    if found.distance is not None:
        current = (np.where(distance < 0, np.iinfo(np.int16).max, distance)
                   if distance is not None
                   else np.full(len(reasons), np.iinfo(np.int16).max, dtype=np.int16))
        near = found.distance[pm]
        keep = near >= 0
        np.minimum.at(current, pr[keep], near[keep])
        distance = np.where(current == np.iinfo(np.int16).max, -1, current).astype(np.int16)
    suppressed = dict(rows.suppressed)
    for source_id, count in found.suppressed.items():
        suppressed[source_id] = suppressed.get(source_id, 0) + count
    merged = dataclasses.replace(rows, reasons=reasons, sources=sources,
                                 suppressed=suppressed, distance=distance)
    alone = np.ones(len(image_keys), dtype=bool)
    alone[pm] = False
    alone &= found.drop
    keys, at = np.unique(np.asarray(image_keys.filter(pl.Series(alone)).to_list(), dtype=object),
                         return_inverse=True)
    orphan_reasons = np.zeros(len(keys), dtype=np.uint32)
    np.bitwise_or.at(orphan_reasons, at, found.reasons[alone])
    orphan_sources = {}
    for source_id, mask in found.sources.items():
        hit = np.zeros(len(keys), dtype=bool)
        hit[at[mask[alone]]] = True
        if hit.any():
            orphan_sources[source_id] = hit
    return merged, Decisions(reasons=orphan_reasons, sources=orphan_sources, unmatchable={})
