"""Per-shard statistics: rows in and out, removals per reason and per source, unmatchable rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from scrub.dataset import Shard


@dataclass
class ShardStats:
    """What happened to one shard. Counts only: never a value from a list or a row."""

    shard: str
    rows_in: int = 0
    rows_out: int = 0
    removed_by_reason: dict[str, int] = field(default_factory=dict)
    removed_by_source: dict[str, int] = field(default_factory=dict)
    #: Removed rows that more than one reason removed: each is counted under every one of its
    #: reasons, so the per-reason counts add up to more than the rows removed by this much
    #: (or more, for rows of three reasons).
    rows_with_several_reasons: int = 0
    unmatchable: dict[str, int] = field(default_factory=dict)
    suppressed_by_source: dict[str, int] = field(default_factory=dict)
    input_size: int = 0
    input_mtime_ns: int = 0
    output_size: int = 0
    #: How the shard's decision records were kept: plain, encrypted, withheld or none.
    decisions: str = "none"
    #: Webdataset shards: the tar's members removed, its output size, and whether the pair was
    #: rewritten (False: nothing matched, the input files were linked or copied as they are).
    tar_members_removed: int = 0
    tar_output_size: int = 0
    rewritten: bool = True
    #: Per list label, keyed ids of the list entries this shard's rows matched (never an
    #: entry's value or position: see :mod:`scrub.engine.entries`), merged over shards to
    #: count the entries that matched nothing.
    matched_entries: dict[str, list[int]] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ShardStats:
        """The stats :meth:`to_json` gave (read back from a completion marker)."""
        return cls(**obj)


@dataclass
class Totals:
    """Stats summed over shards."""

    shards: int = 0
    rows_in: int = 0
    rows_out: int = 0
    removed_by_reason: Counter[str] = field(default_factory=Counter)
    removed_by_source: Counter[str] = field(default_factory=Counter)
    rows_with_several_reasons: int = 0
    unmatchable: Counter[str] = field(default_factory=Counter)
    suppressed_by_source: Counter[str] = field(default_factory=Counter)
    matched_entries: dict[str, set[int]] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out

    @classmethod
    def of(cls, shards: Iterable[ShardStats]) -> Totals:
        totals = cls()
        for stats in shards:
            totals.shards += 1
            totals.rows_in += stats.rows_in
            totals.rows_out += stats.rows_out
            totals.removed_by_reason.update(stats.removed_by_reason)
            totals.removed_by_source.update(stats.removed_by_source)
            totals.rows_with_several_reasons += stats.rows_with_several_reasons
            totals.unmatchable.update(stats.unmatchable)
            totals.suppressed_by_source.update(stats.suppressed_by_source)
            for label, ids in stats.matched_entries.items():
                totals.matched_entries.setdefault(label, set()).update(ids)
        return totals


def input_identity(shard: Shard) -> tuple[int, int]:
    """(size, mtime in ns) of an input shard: a changed input invalidates its marker."""
    st = shard.path.stat()
    return st.st_size, st.st_mtime_ns
