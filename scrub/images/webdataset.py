"""``scrub apply`` on a webdataset copy: a sample the plan drops leaves the tar and the sidecar.

A shard is a sidecar ``NNNNN.parquet`` with its ``NNNNN.tar`` beside it (img2dataset's layout).
The plan's rules run over the sidecar's rows, and its image-hash rules also over every data
member of the tar, whatever its name, place or format (gzipped: on its bytes and the image in it).
A sample (the members of one normalised key) is dropped whole when a member matches or its row is
dropped; it belongs to the row of the same key or the same last path part, digits read as a
number (``imgs/00012``, ``x/12`` and ``12`` are one sample). A dropped row naming no sample of a
tar holding samples is an error (exit 2) unless img2dataset marked it not downloaded. An unchanged
shard is linked (or copied); a changed one keeps every other member byte for byte, in order.
Rationale: docs/design/images.md.
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
from scrub.engine.filtering import Tally, open_writer
from scrub.engine.kernel import Decisions, decide
from scrub.engine.plan import MatchPlan
from scrub.engine.rules import BatchView, Rule
from scrub.engine.scores import scored_roles, shard_scores, with_scores
from scrub.engine.stats import ShardStats, input_identity
from scrub.errors import InvalidDatasetError, brief
from scrub.images.hashing import (
    CONTENT_TYPES,
    GZIP_MAGIC,
    HASH_TYPES,
    PIXEL_TYPES,
    gunzip_layers,
    hash_image,
    is_text,
)
from scrub.images.spool import copy_to_local, local_tar
from scrub.images.tars import (
    TarMembers,
    normal_paths,
    read_members,
    rewrite_tar,
)
from scrub.storage import ObjectPath

IMAGE_ROLES = frozenset(CONTENT_TYPES + PIXEL_TYPES)


def tar_of(shard: Shard) -> Path | ObjectPath | None:
    """The tar beside a sidecar, if there is one."""
    tar = shard.path.with_suffix(".tar")
    return tar if tar.is_file() else None


def filter_webdataset_shard(plan: MatchPlan, shard: Shard, tmp: Path, tmp_tar: Path, *,
                            column_overrides: Mapping[str, str] | None = None,
                            tar: Path | ObjectPath | None = None
                            ) -> tuple[ShardStats, pa.Table]:
    """Write the sidecar and tar of ``shard`` minus the dropped samples to ``tmp`` and
    ``tmp_tar`` (fsynced); return the stats and the decision records (rows of the sidecar).
    ``tar`` is the shard's tar when the caller found it (else :func:`tar_of` looks); one in
    object storage is read through a local copy beside ``tmp_tar`` (:mod:`scrub.images.spool`).

    Tar samples dropped that have no sidecar row are counted per reason and source with the
    rows (they have no decision record: there is no row to name)."""
    tar = tar if tar is not None else tar_of(shard)
    if tar is None:
        raise InvalidDatasetError(f"{shard.path}: no tar beside this sidecar")
    with local_tar(tar, tmp_tar.parent) as local:
        pair = _open_pair(plan, shard, local, column_overrides)
        size, mtime = input_identity(shard)
        stats = ShardStats(shard=shard.name, input_size=size, input_mtime_ns=mtime,
                           rows_in=pair.table.num_rows)
        decisions, drop_samples = _match(plan, pair, stats)
        drop = decisions.drop
        if not drop.any() and not drop_samples:
            copy_to_local(shard.path, tmp)
            link_or_copy(pair.tar, tmp_tar)
            stats.rewritten = False
        else:
            _rewrite(pair, drop, drop_samples, tmp, tmp_tar, stats)
    stats.output_size = tmp.stat().st_size
    stats.tar_output_size = tmp_tar.stat().st_size
    return stats, decisions.records(0)


@dataclasses.dataclass(frozen=True)
class _Pair:
    """A webdataset shard read and checked: its sidecar, its tar's members, and the plan's
    rules split into those run over the tar's members and those run over the sidecar rows."""

    shard: Shard
    tar: Path
    schema: pa.Schema
    table: pa.Table
    view: pa.Table
    roles: ColumnRoles
    members: TarMembers
    tar_rules: list[Rule]
    row_rules: list[Rule]


def _open_pair(plan: MatchPlan, shard: Shard, tar: Path,
               column_overrides: Mapping[str, str] | None) -> _Pair:
    """Read the sidecar and the member list of its (local) tar, and check that the plan can
    run on them (every role a sidecar rule reads has a column; image rules have a key to join
    on)."""
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
    if roles.get("key") is None and tar_rules:
        raise InvalidDatasetError(f"{shard.path}: no key column to join image hashes on",
                                  hint="name it with --column key=NAME")
    return _Pair(shard, tar, parquet.schema_arrow, table, view, roles, members, tar_rules,
                 row_rules)


def _match(plan: MatchPlan, pair: _Pair, stats: ShardStats) -> tuple[Decisions, set[str]]:
    """The sidecar rows' decisions (their samples' image matches merged in) and the tar keys
    of the samples to drop; the tally goes into ``stats``."""
    tally = Tally(plan)
    decisions = decide(_only(plan, pair.row_rules), pair.view, pair.roles)
    key_column = pair.roles.get("key")
    sidecar_keys = (normal_paths(pl.Series(pair.table.column(key_column)).cast(pl.String))
                    if key_column is not None else None)
    tar_keys = pair.members.keys()
    matched_keys = pl.Series([], dtype=pl.String)
    if pair.tar_rules and sidecar_keys is not None:
        decisions, matched_keys = _match_members(plan, pair, decisions, tar_keys, sidecar_keys,
                                                 tally)
    tally.add(decisions)
    tally.into(stats)
    drop = decisions.drop
    stats.rows_out = int((~drop).sum())
    drop_samples = set(matched_keys.to_list())
    if sidecar_keys is not None and drop.any():
        data_keys = tar_keys.filter(pl.Series(pair.members.is_data()))
        rows, at = _links(sidecar_keys, data_keys)
        dropped = drop[rows]
        drop_samples |= set(data_keys.gather(at[dropped]).to_list())
        _check_linked(pair.shard, pair.table, drop, rows[dropped], len(data_keys))
    return decisions, drop_samples


def _match_members(plan: MatchPlan, pair: _Pair, decisions: Decisions, tar_keys: pl.Series,
                   sidecar_keys: pl.Series, tally: Tally) -> tuple[Decisions, pl.Series]:
    """Run the image rules over every data member of the tar: the rows' decisions with their
    samples' matches merged in, and the keys of the members that matched. The members' own
    tally (what they could not match, which entries they hit, and the samples without a row)
    goes into ``tally``."""
    table_view, view_roles, images, not_images = _member_view(pair.tar, pair.members,
                                                              pair.tar_rules)
    found = decide(_only(plan, pair.tar_rules), table_view, view_roles)
    for column in not_images:  # plain-text members (captions, JSON): no pixels to hash
        found.unmatchable[column] = max(0, found.unmatchable.get(column, 0)
                                        - not_images[column])
    image_keys = tar_keys.gather(images) if len(images) else pl.Series([], dtype=pl.String)
    merged, orphans = _merge(decisions, found, image_keys, sidecar_keys)
    # no removals in the members' own tally: those are counted once, on the rows and the
    # samples without a row
    tally.add(dataclasses.replace(found, reasons=np.zeros_like(found.reasons), sources={},
                                  suppressed={}, distance=None))
    tally.add(orphans)
    return merged, image_keys.filter(pl.Series(found.drop)).unique()


def _rewrite(pair: _Pair, drop: np.ndarray, drop_samples: set[str], tmp: Path, tmp_tar: Path,
             stats: ShardStats) -> None:
    """Write the sidecar without the dropped rows and the tar without the dropped samples
    (fsynced)."""
    if pair.roles.get("key") is None:
        raise InvalidDatasetError(f"{pair.shard.path}: no key column to find samples in the tar",
                                  hint="name it with --column key=NAME")
    with open(tmp, "wb") as handle:
        with open_writer(handle, pair.schema, pair.roles) as writer:
            writer.write_table(keep_rows(pair.table, ~drop))
        handle.flush()
        os.fsync(handle.fileno())
    stats.tar_members_removed = rewrite_tar(pair.tar, tmp_tar, pair.members, drop_samples)


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


def _sample_name(keys: pl.Series) -> pl.Series:
    """The last path part of each key, a run of digits read as its number (``x/00012`` ->
    ``12``): how img2dataset's keys are spelled in a sidecar (an int64 column, a folder
    prefix) and in the tar (zero-padded to the shard's width) name the same sample."""
    last = _last_part(keys)
    number = last.str.strip_chars_start("0")
    return pl.select(pl.when(last.str.contains(r"^[0-9]+$"))
                     .then(pl.when(number == "").then(pl.lit("0")).otherwise(number))
                     .otherwise(last)).to_series()


def _links(sidecar_keys: pl.Series, tar_keys: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(row, tar key index) pairs, unique: a sidecar row owns the tar keys equal to its own
    (both normalised) or naming the same sample (see :func:`_sample_name`). Linking too much
    only drops more; linking too little would keep a dropped row's sample."""
    rows = pl.DataFrame({"row": np.arange(len(sidecar_keys), dtype=np.int64),
                         "key": sidecar_keys, "name": _sample_name(sidecar_keys)})
    tar = pl.DataFrame({"at": np.arange(len(tar_keys), dtype=np.int64), "key": tar_keys,
                        "name": _sample_name(tar_keys)})
    pairs = pl.concat([rows.join(tar, on="key").select("row", "at"),
                       rows.join(tar, on="name").select("row", "at")]).unique()
    return pairs["row"].to_numpy(), pairs["at"].to_numpy()


def _check_linked(shard: Shard, table: pa.Table, drop: np.ndarray, linked: np.ndarray,
                  samples: int) -> None:
    """A dropped row must take a tar sample with it: one whose key names no sample of a tar
    that has samples is an error (exit 2) naming the shard and the row, never a silent keep.
    Rows img2dataset marks as not downloaded (a ``status`` other than ``success``) have no
    sample by design."""
    if samples == 0:
        return
    alone = drop.copy()
    alone[linked] = False
    kind = table.schema.field("status").type if "status" in table.column_names else None
    if kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        status = pl.Series(table.column("status"))
        alone &= ~(status.is_not_null() & (status != "success")).to_numpy()
    if alone.any():
        first = int(np.argmax(alone))
        raise InvalidDatasetError(
            f"{shard.path}: {int(alone.sum())} removed row(s) name no sample of "
            f"{shard.path.with_suffix('.tar').name} (first: row {first}); their samples cannot be "
            "found to remove them, so nothing of this shard is written",
            hint="give the sidecar the tar's keys (img2dataset's 'key' column), or name the "
                 "key column with --column key=NAME")


def _member_view(tar: Path, members: TarMembers, rules: list[Rule]
                 ) -> tuple[pa.Table, ColumnRoles, np.ndarray, dict[str, int]]:
    """The hashes the rules read (``md5 (tar member)``...) with the roles naming them, the
    member of each row, and per pixel-hash column the rows that are plain text.

    Every data member gets a row, whatever its name or format: content hashes need no
    decoding, and perceptual hashes are tried on every member (Pillow decodes formats no name
    or signature table lists: TGA, PCX...). A gzip member (``k.jpg.gz``: webdataset inflates it
    before decoding) gets a further row per inflated layer. A hash that cannot be computed (an
    undecodable or oversized image, a corrupt or oversized gzip layer: a row with no hash) is
    null, so the rules count it as unmatchable; only plain-text members that are not images
    (captions, JSON) are left out of that count for pixel hashes."""
    needed = {role for rule in rules for role in rule.roles}
    types = [t for t in HASH_TYPES if t in needed]
    pixels = [t for t in types if t in PIXEL_TYPES]
    columns: dict[str, list[object]] = {t: [] for t in types}
    if "pdq" in types:
        columns["pdq_quality"] = []
    owners: list[int] = []
    text_rows = 0

    def add(index: int, hashed: dict[str, object]) -> None:
        owners.append(index)
        for name, values in columns.items():
            values.append(hashed.get(name))

    data_members = np.flatnonzero(members.is_data())
    if len(data_members):
        try:
            with open(tar, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                      access=mmap.ACCESS_READ) as data:
                for index in data_members.tolist():
                    start = int(members.offset_data[index])
                    raw = data[start: start + int(members.size[index])]
                    layers = [raw]
                    if members.names[index].lower().endswith(".gz") or raw[:2] == GZIP_MAGIC:
                        inflated, problem = gunzip_layers(raw)
                        layers += inflated
                        if problem is not None:
                            add(index, {})  # the bytes past the problem: unmatchable
                    for layer in layers:
                        hashed = hash_image(layer, types)
                        if (pixels and hashed.get("error") in ("not an image", "empty")
                                and is_text(layer)):
                            text_rows += 1
                        add(index, hashed)
        except OSError as exc:
            raise InvalidDatasetError(f"{tar}: cannot read ({brief(exc)})") from exc
    names = {name: f"{name} (tar member)" for name in columns}
    table = pa.table({names[name]: pa.array(values, type=pa.int16() if name == "pdq_quality"
                                            else pa.string())
                      for name, values in columns.items()})
    return (table, ColumnRoles(names), np.asarray(owners, dtype=np.int64),
            {names[t]: text_rows for t in pixels})


def _merge(rows: Decisions, found: Decisions, image_keys: pl.Series,
           sidecar_keys: pl.Series) -> tuple[Decisions, Decisions]:
    """The sidecar rows' decisions with the matches of their samples' image members added (a
    member belongs to the rows of its key, or of its key's last path part), and the decisions
    on the samples that have no row (one entry per such key)."""
    pr, pm = _links(sidecar_keys, image_keys)
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
