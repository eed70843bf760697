"""The kernel: one batch in, the rows to drop and why out. Pure: no I/O, no global state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.dataset import ColumnRoles, check_role_types
from scrub.engine.plan import MatchPlan
from scrub.engine.rules import BatchView, Rule


@dataclass
class Decisions:
    """The kernel's verdict on one batch.

    ``reasons`` is a per-row bitmask of :class:`~scrub.engine.reasons.Reason` bits (0 = keep);
    ``sources`` maps a source id to the mask of rows it matched; ``unmatchable`` counts rows per
    column that no rule of that column could match (null or malformed values).
    """

    reasons: np.ndarray
    sources: dict[int, np.ndarray]
    unmatchable: dict[str, int]
    #: Rows whose match by a source was cleared by an allow-list, per source id.
    suppressed: dict[int, int] = field(default_factory=dict)
    #: Smallest Hamming distance of a perceptual match per row (-1 where there is none).
    distance: np.ndarray | None = None
    #: With ``groups`` (release variants): per group, the reason bitmask of each row from
    #: that group's sources only (0 = the group keeps the row).
    group_reasons: list[np.ndarray] = field(default_factory=list)
    #: Rows each rule matched (index in ``plan.rules``), before allow-lists cleared any: which
    #: list entries matched is worked out from these (see :class:`~scrub.engine.filtering.Tally`).
    hits: dict[int, np.ndarray] = field(default_factory=dict)
    #: Rows each allow rule (index in ``plan.allow``) kept despite a match.
    cleared: dict[int, np.ndarray] = field(default_factory=dict)
    #: The view the rules read (its derived columns serve the entry look-ups).
    view: BatchView | None = None

    def records(self, first_row: int) -> pa.Table:
        """The dropped rows as decision records: row (within the shard), reason bitmask, the
        ids of the sources that matched, and the perceptual distance (null if none).
        Evidence only: never a value from a list or from the row."""
        rows = self.dropped_rows
        hits = sorted(self.sources.items())
        if len(hits) == 1:  # the common case: one source, one id per row
            offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32))
            sources = pa.ListArray.from_arrays(
                offsets, pa.array(np.full(len(rows), hits[0][0], dtype=np.int32)))
        else:
            pairs_row = [np.flatnonzero(hit) for _, hit in hits]
            pairs_source = [np.full(len(r), source_id, dtype=np.int32)
                            for (source_id, _), r in zip(hits, pairs_row, strict=True)]
            grouped = (pl.DataFrame({
                "row": np.concatenate(pairs_row) if pairs_row else np.zeros(0, dtype=np.int64),
                "source": np.concatenate(pairs_source) if pairs_source
                else np.zeros(0, dtype=np.int32)})
                .group_by("row").agg(pl.col("source").sort()))
            sources = (pl.DataFrame({"row": rows}).join(grouped, on="row", how="left")["source"]
                       .to_arrow().cast(pa.list_(pa.int32())))
        distance = None
        if self.distance is not None:
            distance = pa.array(self.distance[rows], type=pa.int16(),
                                mask=self.distance[rows] < 0)
        return pa.table({
            "row": pa.array(rows + first_row, type=pa.int64()),
            "reasons": pa.array(self.reasons[rows], type=pa.uint32()),
            "sources": pa.array(sources, type=pa.list_(pa.int32())),
            "distance": distance if distance is not None
            else pa.nulls(len(rows), type=pa.int16()),
        })

    @property
    def drop(self) -> np.ndarray:
        return self.reasons != 0

    @property
    def dropped_rows(self) -> np.ndarray:
        """Row indices (within the batch) to drop, ascending."""
        return np.flatnonzero(self.reasons)


def decide(plan: MatchPlan, batch: pa.RecordBatch | pa.Table, roles: ColumnRoles, *,
           groups: Sequence[frozenset[int]] = (), view: BatchView | None = None) -> Decisions:
    """Run every rule of ``plan`` over ``batch`` (a record batch or a table of one row group).

    ``groups`` are sets of source ids (the variants of a release, each a subset of the plan):
    every rule still runs once, and each group's reasons come from its own sources only.

    ``view``: a :class:`BatchView` of ``batch`` to work in (the caller then finds in it what the
    rules worked out, e.g. the rows' hosts); a fresh one by default."""
    if view is None:
        view = BatchView(batch, roles)
    elif view.batch is not batch:
        raise ValueError("the view given is of another batch")
    # Every column a rule reads must be able to hold its role's values: a digest column of
    # lists or a null-typed URL column is an error, never rows that quietly match nothing.
    check_role_types(batch.schema, roles,
                     plan.required_roles() | {a.key_type.target for a in plan.allow})
    distance: np.ndarray | None = None
    reasons = np.zeros(batch.num_rows, dtype=np.uint32)
    sources: dict[int, np.ndarray] = {}
    suppressed: dict[int, int] = {}
    allowed: dict[int, np.ndarray] = {}
    group_reasons = [np.zeros(batch.num_rows, dtype=np.uint32) for _ in groups]
    hits: dict[int, np.ndarray] = {}
    kept: dict[int, np.ndarray] = {}
    for rule_index, rule in enumerate(plan.rules):
        hit = rule.match(view)
        if not hit.any():
            continue
        hits[rule_index] = hit
        hit = _clear_allowed(plan, view, rule, hit, allowed=allowed, kept=kept,
                             suppressed=suppressed)
        if not hit.any():
            continue
        distance = _nearest(distance, view.distances.pop(id(rule), None), hit, batch.num_rows)
        _attribute(rule, view, hit, reasons, sources, groups, group_reasons)
    return Decisions(reasons=reasons, sources=sources, unmatchable=view.unmatchable,
                     suppressed=suppressed, distance=distance, group_reasons=group_reasons,
                     hits=hits, cleared=kept, view=view)


def _clear_allowed(plan: MatchPlan, view: BatchView, rule: Rule, hit: np.ndarray, *,
                   allowed: dict[int, np.ndarray], kept: dict[int, np.ndarray],
                   suppressed: dict[int, int]) -> np.ndarray:
    """``hit`` less the rows an allow rule covering ``rule`` keeps; records those rows in
    ``kept`` (per allow rule) and their count in ``suppressed`` (per source). ``allowed``
    caches each allow rule's match over the batch."""
    for index, allow in enumerate(plan.allow):
        if not allow.covers(rule):
            continue
        if index not in allowed:
            allowed[index] = allow.match(view)
        cleared = hit & allowed[index]
        if cleared.any():
            kept[index] = cleared | kept[index] if index in kept else cleared
            suppressed[rule.source.id] = (suppressed.get(rule.source.id, 0)
                                          + int(cleared.sum()))
            hit = hit & ~cleared
    return hit


def _nearest(distance: np.ndarray | None, found: tuple[np.ndarray, np.ndarray] | None,
             hit: np.ndarray, num_rows: int) -> np.ndarray | None:
    """``distance`` (per row, -1 for none) lowered to the distances ``found`` (rows, values)
    by a perceptual rule on the rows it still drops (``hit``)."""
    if found is None:
        return distance
    if distance is None:
        distance = np.full(num_rows, -1, dtype=np.int16)
    rows, values = found
    keep = hit[rows]
    rows, values = rows[keep], values[keep]
    current = distance[rows]
    distance[rows] = np.where((current < 0) | (values < current), values, current)
    return distance


def _attribute(rule: Rule, view: BatchView, hit: np.ndarray, reasons: np.ndarray,
               sources: dict[int, np.ndarray], groups: Sequence[frozenset[int]],
               group_reasons: list[np.ndarray]) -> None:
    """Set the reason bits of the sources of ``rule`` that matched the rows of ``hit``, in
    ``reasons`` and in the reasons of each group holding the source; add the rows to
    ``sources``."""
    for source_id, mask in rule.attribute(view, hit).items():
        bit = np.uint32(rule.reason_of(source_id).mask)
        reasons[mask] |= bit
        for members, into in zip(groups, group_reasons, strict=True):
            if source_id in members:
                into[mask] |= bit
        seen = sources.get(source_id)
        sources[source_id] = mask if seen is None else (seen | mask)
