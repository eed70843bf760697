"""The takedown-request ledger: requests, their sealed items, and an event history whose chain
is keyed with the ledger key and from which every request's state is re-derived.

The names below are the package's public face, loaded on first use (SQLAlchemy is not imported
by ``scrub.ledger.vocabulary`` users).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrub.ledger.audit import Anchor, ChainReport, LedgerReport
    from scrub.ledger.sealing import IdentitySeal
    from scrub.ledger.service import Ledger
    from scrub.ledger.specs import (
        AppendOnlyError,
        LedgerError,
        LedgerIntegrityError,
        RequestSpec,
        RequestView,
        TransitionError,
    )
    from scrub.ledger.vocabulary import ITEM_TYPES, KINDS, STATUSES

_EXPORTS = {
    **dict.fromkeys(["Anchor", "ChainReport", "LedgerReport"], "scrub.ledger.audit"),
    "IdentitySeal": "scrub.ledger.sealing",
    "Ledger": "scrub.ledger.service",
    **dict.fromkeys(["AppendOnlyError", "LedgerError", "LedgerIntegrityError", "RequestSpec",
                     "RequestView", "TransitionError"], "scrub.ledger.specs"),
    **dict.fromkeys(["ITEM_TYPES", "KINDS", "STATUSES"], "scrub.ledger.vocabulary"),
}

__all__ = ["ITEM_TYPES", "KINDS", "STATUSES", "Anchor", "AppendOnlyError", "ChainReport",
           "IdentitySeal", "Ledger", "LedgerError", "LedgerIntegrityError", "LedgerReport",
           "RequestSpec", "RequestView", "TransitionError"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
