"""Per-variant statistics of one shard of a release build: what its audit, manifest and sealed
state record, typed (the dict form is what states and completion markers hold)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scrub.engine.plan import MatchPlan
from scrub.release.probe import HOSTS, TAILS


@dataclass
class VariantShardStats:
    """One shard in one variant: rows in and out, removals per reason, per source (report
    labels) and per ledger item (``REQUEST:DIGEST`` labels), rows removed for several reasons,
    rows per combination of reasons (``code+code``, sorted codes), the keyed ids of the list
    entries its rows matched per source label (:mod:`scrub.engine.entries`), the digests of the
    written shard and of the input, the probe-set tags (kind -> tag), the embeddings file
    written (``name``, ``sha256``), the sealed state's tag, and whether the
    shard was reused from a previous release. ``by_combination`` and ``matched_entries`` are
    None in the states of builds before they were counted (the audit says so)."""

    shard: str
    rows_in: int
    rows_out: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    several_reasons: int = 0
    by_item: dict[str, int] = field(default_factory=dict)
    sha256: str = ""
    input_sha256: str = ""
    probe_tags: dict[str, str] = field(default_factory=dict)
    embeddings: dict[str, str] | None = None
    state: str = ""
    reused: bool = False
    by_combination: dict[str, int] | None = None
    matched_entries: dict[str, list[int]] | None = None

    def record(self) -> dict[str, object]:
        """The form sealed in the shard's state (its keys are part of the sealed bytes)."""
        body: dict[str, object] = {
            "shard": self.shard, "rows_in": self.rows_in, "rows_out": self.rows_out,
            "by_reason": self.by_reason, "by_source": self.by_source,
            "several_reasons": self.several_reasons, "by_item": self.by_item,
            "sha256": self.sha256, "input_sha256": self.input_sha256, **self.probe_tags}
        if self.embeddings is not None:
            body["embeddings"] = self.embeddings
        if self.by_combination is not None:
            body["by_combination"] = self.by_combination
        if self.matched_entries is not None:
            body["matched_entries"] = self.matched_entries
        return body

    def marker(self) -> dict[str, object]:
        """The form a completion marker holds: the record, the state's tag, reuse."""
        body = {**self.record(), "state": self.state}
        if self.reused:
            body["reused"] = True
        return body

    @classmethod
    def from_record(cls, body: Mapping[str, object]) -> VariantShardStats:
        """From a sealed state's or a marker's dict (states of older builds may lack
        ``several_reasons`` and ``by_item``: none counted)."""
        embeddings, combined = body.get("embeddings"), body.get("by_combination")
        matched = body.get("matched_entries")
        return cls(
            shard=str(body["shard"]), rows_in=_int(body["rows_in"]),
            rows_out=_int(body["rows_out"]), by_reason=_counts(body.get("by_reason")),
            by_source=_counts(body.get("by_source")),
            several_reasons=_int(body.get("several_reasons", 0)),
            by_item=_counts(body.get("by_item")), sha256=str(body.get("sha256", "")),
            input_sha256=str(body.get("input_sha256", "")),
            probe_tags={kind: str(body[kind]) for kind in (HOSTS, TAILS) if kind in body},
            embeddings=({str(k): str(v) for k, v in embeddings.items()}
                        if isinstance(embeddings, dict) else None),
            state=str(body.get("state", "")), reused=bool(body.get("reused", False)),
            by_combination=_counts(combined) if isinstance(combined, dict) else None,
            matched_entries=({str(k): [_int(i) for i in v] for k, v in matched.items()
                              if isinstance(v, list)} if isinstance(matched, dict) else None))


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float, str)) else 0


def _counts(value: object) -> dict[str, int]:
    return {str(k): _int(v) for k, v in value.items()} if isinstance(value, dict) else {}


def source_labels(plan: MatchPlan) -> dict[int, str]:
    """Source id -> the label reports use (every ledger request is "ledger requests")."""
    return {s.id: "ledger requests" if s.kind == "request" else s.label for s in plan.sources}


def rows_per_item(stats: Mapping[str, list[VariantShardStats]]
                  ) -> dict[int, dict[str, dict[str, int]]]:
    """Request id -> variant -> keyed item digest -> rows the variant removed that the item
    matches, summed over the shards' stats (items that matched nothing are absent)."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for variant, shards in stats.items():
        for shard in shards:
            for label, count in shard.by_item.items():
                request, digest = label.split(":", 1)
                counts = out.setdefault(int(request), {}).setdefault(variant, {})
                counts[digest] = counts.get(digest, 0) + count
    return out
