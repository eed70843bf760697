"""A request's lifecycle: its deadlines and the transitions an action makes, applied to one
stored request by :class:`~scrub.ledger.service.Ledger` (the only writer)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from scrub.ledger.models import Request
from scrub.ledger.specs import LedgerError, TransitionError

DEADLINE = dt.timedelta(days=30)
LONGEST = dt.timedelta(days=90)

#: Allowed transitions: action -> (states it may start from, state it leads to).
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "verify": (frozenset({"received"}), "verified"),
    "reject": (frozenset({"received"}), "rejected"),
    "schedule": (frozenset({"verified"}), "scheduled"),
    "apply": (frozenset({"verified", "scheduled", "applied"}), "applied"),
    "close": (frozenset({"applied", "rejected"}), "closed"),
    "withdraw": (frozenset({"received", "verified", "scheduled"}), "withdrawn"),
}


def move_request(request: Request | None, request_id: int, action: str, *,
                 reason: str | None, release: str | None, strict: bool,
                 rows: Mapping[int, Mapping[str, Mapping[str, int]]] | None
                 ) -> dict[str, object] | None:
    """Move one request (None when it is not stored) by ``action``: the body of its event, or
    None when it cannot move and that is not an error (not ``strict``)."""
    allowed, target = TRANSITIONS[action]
    if request is None:
        if not strict:
            return None
        raise LedgerError(f"no request {request_id} in the ledger",
                          hint="list them with `scrub requests ls`")
    releases = json.loads(request.releases or "[]")
    if request.status not in allowed or (release and release in releases):
        if not strict:
            return None
        if request.status in allowed:
            raise TransitionError(f"request {request_id} already records that release")
        raise TransitionError(
            f"request {request_id} is {request.status}; '{action}' needs it to be "
            f"{' or '.join(sorted(allowed))}")
    body: dict[str, object] = {"before": {"status": request.status},
                               "after": {"status": target}}
    request.status = target
    if reason:
        body["reason"] = reason
    if release:
        releases.append(release)
        request.releases = json.dumps(releases)
        body["release"] = release
        if rows is not None:
            body["rows"] = {variant: {d: int(n) for d, n in sorted(counts.items())}
                            for variant, counts in sorted(rows.get(request_id, {}).items())}
    return body
