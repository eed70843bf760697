"""Rules: what to match, why (a reason code) and because of whom (a source).

A rule is one small class with a ``match`` method over a :class:`BatchView`; the kernel ORs the
masks. Adding a match kind is adding a rule class, not an ``elif`` in the kernel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa

from scrub.dataset import ColumnRoles
from scrub.engine.reasons import Reason
from scrub.keys import KeySet, hex_to_keys
from scrub.lists.types import KeyType, UrlDigestType


@dataclass(frozen=True)
class Source:
    """Where a rule comes from: a list (label + file digest) or, later, a ledger request.

    ``details`` is a value-free description (entry counts, format) for reports.
    """

    id: int
    label: str
    kind: str
    digest: str
    sensitive: bool = True
    details: tuple[tuple[str, object], ...] = ()


class BatchView:
    """One record batch with its column roles and a cache of derived key columns.

    Derived columns (decoded hashes, URL digests) are computed once per batch, whichever rules
    need them, and the rows that cannot match a rule because their value is missing or malformed
    are counted per column as ``unmatchable``.
    """

    def __init__(self, batch: pa.RecordBatch | pa.Table, roles: ColumnRoles) -> None:
        self.batch = batch
        self.roles = roles
        self.num_rows = batch.num_rows
        self.unmatchable: dict[str, int] = {}
        self._keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def column(self, role: str) -> pa.Array:
        name = self.roles.get(role)
        if name is None:
            raise KeyError(role)
        return self.batch.column(name)

    def keys_for(self, key_type: type[KeyType]) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, valid)`` of the column this type matches, decoded to fixed-width binary."""
        cached = self._keys.get(key_type.name)
        if cached is not None:
            return cached
        if issubclass(key_type, UrlDigestType):
            digests = _url_digest(self.column("url"), key_type.url_digest)
            keys, valid = hex_to_keys(digests, key_type.width)
        else:
            column = self.column(key_type.target)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                    or pa.types.is_string_view(column.type)):
                keys = np.zeros((self.num_rows, key_type.width), dtype=np.uint8)
                valid = np.zeros(self.num_rows, dtype=bool)
            else:
                keys, valid = hex_to_keys(column, key_type.width)
            name = self.roles.get(key_type.target) or key_type.target
            self.unmatchable[name] = int((~valid).sum())
        self._keys[key_type.name] = (keys, valid)
        return keys, valid


def _url_digest(urls: pa.Array, digest: str) -> pa.Array:
    """Hex digest of each URL's UTF-8 bytes, exactly as stored (null stays null)."""
    frame = pl.DataFrame({"u": pl.Series(urls).cast(pl.String)})
    expr = plh.col("u")
    hashed = {
        "md5": expr.nchash.md5(),
        "sha1": expr.nchash.sha1(),
        "sha256": expr.chash.sha2_256(),
    }[digest]
    return frame.select(hashed).to_series().to_arrow()


class Rule(ABC):
    """A match with a reason and a source."""

    def __init__(self, reason: Reason, source: Source) -> None:
        self.reason = reason
        self.source = source

    @property
    @abstractmethod
    def roles(self) -> tuple[str, ...]:
        """Column roles the rule reads."""

    @abstractmethod
    def match(self, view: BatchView) -> np.ndarray:
        """Boolean mask of the rows this rule drops."""

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """A value-free description (kind, reason, source, sizes) for fingerprints and reports."""


class ExactKeyRule(Rule):
    """Exact membership of a row's key (a content hash or a URL digest) in a set of keys."""

    def __init__(self, key_type: type[KeyType], keys: KeySet, reason: Reason,
                 source: Source) -> None:
        super().__init__(reason, source)
        self.key_type = key_type
        self.keys = keys

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.key_type.target,)

    def match(self, view: BatchView) -> np.ndarray:
        keys, valid = view.keys_for(self.key_type)
        return self.keys.contains(keys, valid)

    def describe(self) -> dict[str, object]:
        return {"kind": "exact_key", "type": self.key_type.name, "reason": self.reason.code,
                "source": self.source.label, "entries": len(self.keys)}
