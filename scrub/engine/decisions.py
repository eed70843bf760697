"""Decision records: for every dropped row, why (reason bits) and because of whom (source ids),
with evidence such as a perceptual distance. Never a list value, never a row's content.

One file per shard under ``OUTPUT.scrub/decisions/`` (OUTPUT's companion folder). When a
sensitive source (a partner list) contributed to a shard's removals, its file is encrypted with
the data key (``SHARD.decisions.parquet.enc``); without a key those records are withheld, never
written in clear. ``OUTPUT.scrub/sources.json`` maps source ids to labels. ``scrub decisions
show`` lets an auditor holding the key read them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scrub.atomic import atomic_path, atomic_write_json
from scrub.crypto import EncryptingWriter, KeyFileError, decrypt_frames
from scrub.engine.plan import MatchPlan
from scrub.engine.reasons import Reason
from scrub.errors import UserInputError
from scrub.storage import ObjectPath

PLAIN, ENCRYPTED, WITHHELD, NONE = "plain", "encrypted", "withheld", "none"
_SUFFIX = ".decisions.parquet"


def write_decisions(folder: Path | ObjectPath, shard_name: str, records: pa.Table, plan: MatchPlan,
                    key: bytes | None) -> str:
    """Store one shard's records; returns how (plain, encrypted, withheld or none)."""
    if records.num_rows == 0:
        return NONE
    used = set(pc.unique(pc.list_flatten(records.column("sources"))).to_pylist())
    sensitive = any(s.sensitive and s.id in used for s in plan.sources)
    if sensitive and key is None:
        return WITHHELD
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (shard_name + _SUFFIX + (".enc" if sensitive else ""))
    with atomic_path(target, private=sensitive) as tmp, open(tmp, "wb") as handle:
        if sensitive:
            sink = EncryptingWriter(key or b"", _purpose(shard_name), handle)
            pq.write_table(records, sink, compression="zstd")
            sink.close()
        else:
            pq.write_table(records, handle, compression="zstd")
    return ENCRYPTED if sensitive else PLAIN


def write_sources(folder: Path | ObjectPath, plan: MatchPlan) -> None:
    """The id -> label map of a run's sources (labels and kinds only)."""
    atomic_write_json(folder / "sources.json",
                      [{"id": s.id, "label": s.label, "kind": s.kind, "sensitive": s.sensitive}
                       for s in plan.sources])


def read_decisions(state_dir: Path, *, key: bytes | None = None,
                   shard: str | None = None) -> Iterator[tuple[str, pa.Table]]:
    """(shard, records) of a run, decrypting with ``key`` where needed."""
    folder = state_dir / "decisions"
    if not folder.is_dir():
        raise UserInputError(f"{state_dir}: no decision records here",
                             hint="point at the OUTPUT folder of a scrub apply run")
    for path in sorted(folder.iterdir()):
        name = path.name.split(_SUFFIX)[0]
        if shard is not None and name != shard:
            continue
        if path.name.endswith(".enc"):
            if key is None:
                raise KeyFileError(f"{path.name}: encrypted decision records need the key",
                                   hint="pass --key-file or set SCRUB_KEY_FILE")
            with open(path, "rb") as handle:
                data = b"".join(decrypt_frames(key, _purpose(name), handle, name=path.name))
            yield name, pq.read_table(io.BytesIO(data))
        else:
            yield name, pq.read_table(path)


class DescribedRecord(TypedDict):
    """A decision record for people: its row, reason codes, source labels and distance."""

    row: int
    reasons: list[str]
    sources: list[str]
    distance: int | None


def describe_records(state_dir: Path, records: pa.Table) -> list[DescribedRecord]:
    """Records with reason codes and source labels, for people."""
    sources = {s["id"]: s["label"] for s in json.loads((state_dir / "sources.json").read_text())}
    out: list[DescribedRecord] = []
    for row in records.to_pylist():
        out.append({"row": row["row"],
                    "reasons": [r.code for r in Reason.from_mask(row["reasons"])],
                    "sources": [sources.get(i, str(i)) for i in row["sources"] or []],
                    "distance": row["distance"]})
    return out


def _purpose(shard_name: str) -> str:
    return f"decisions:{shard_name}"
