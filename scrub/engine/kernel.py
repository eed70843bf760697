"""The kernel: one batch in, the rows to drop and why out. Pure: no I/O, no global state."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from scrub.dataset import ColumnRoles
from scrub.engine.plan import MatchPlan
from scrub.engine.rules import BatchView


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

    @property
    def drop(self) -> np.ndarray:
        return self.reasons != 0

    @property
    def dropped_rows(self) -> np.ndarray:
        """Row indices (within the batch) to drop, ascending."""
        return np.flatnonzero(self.reasons)


def decide(plan: MatchPlan, batch: pa.RecordBatch | pa.Table, roles: ColumnRoles) -> Decisions:
    """Run every rule of ``plan`` over ``batch`` (a record batch or a table of one row group)."""
    view = BatchView(batch, roles)
    reasons = np.zeros(batch.num_rows, dtype=np.uint32)
    sources: dict[int, np.ndarray] = {}
    suppressed: dict[int, int] = {}
    allowed: dict[int, np.ndarray] = {}
    for rule in plan.rules:
        hit = rule.match(view)
        if not hit.any():
            continue
        for index, allow in enumerate(plan.allow):
            if not allow.covers(rule):
                continue
            if index not in allowed:
                allowed[index] = allow.match(view)
            cleared = hit & allowed[index]
            if cleared.any():
                suppressed[rule.source.id] = (suppressed.get(rule.source.id, 0)
                                              + int(cleared.sum()))
                hit = hit & ~cleared
        if not hit.any():
            continue
        reasons[hit] |= np.uint32(rule.reason.mask)
        seen = sources.get(rule.source.id)
        sources[rule.source.id] = hit if seen is None else (seen | hit)
    return Decisions(reasons=reasons, sources=sources, unmatchable=view.unmatchable,
                     suppressed=suppressed)
