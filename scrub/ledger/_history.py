"""A request as its events describe it: ``scrub ledger verify`` derives each request's state
from the history (:mod:`scrub.ledger.audit`) and compares it with the tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scrub.ledger.vocabulary import KINDS, STATUSES

#: Actions that move a request to a status (the lifecycle's transitions).
MOVES = frozenset({"verify", "reject", "schedule", "apply", "close", "withdraw"})
#: Staff account events (``scrub users``, the console's sign-ins): they name no request.
ACCOUNT_ACTIONS = frozenset({"user_added", "password_set", "sign_in", "sign_in_failed",
                             "sign_out", "account_locked", "account_unlocked"})


@dataclass
class DerivedRequest:
    """A request as its events describe it."""

    kind: str
    status: str
    received_at: str
    due_at: str
    requester: str | None
    notes: str | None
    legacy: bool
    extension_reason: str | None = None
    releases: list[str] = field(default_factory=list)
    item_sum: int = 0
    item_count: int = 0
    legacy_items: set[str] = field(default_factory=set)

    def add_items(self, digests: Iterable[str], *, keyed: bool) -> None:
        for digest in digests:
            if keyed:
                self.item_sum += int(digest, 16)
                self.item_count += 1
            else:
                self.legacy_items.add(digest)


def derive(states: dict[int, DerivedRequest], snapshot: dict[str, list[str | None]], seq: int,
           request_id: int | None, action: str, body_text: str, keyed: bool) -> str | None:
    """Apply one event to the derived state; a problem when it does not describe a valid step
    (only a bug or a forged legacy event can cause one: keyed events are scrub's own)."""
    try:
        body = json.loads(body_text)
        if action == "rekey":
            if keyed:  # only the migration, holding the key, vouches for earlier requests
                snapshot.update(body["requests"])
            return None
        if action in ACCOUNT_ACTIONS:
            if request_id is not None or not isinstance(body, dict):
                return f"event {seq} ({action}): an account event names no request"
            return None
        if request_id is None:
            return f"event {seq} ({action}) names no request"
        if action == "created":
            return _created(states, seq, request_id, body, keyed)
        state = states.get(request_id)
        if state is None:
            return f"event {seq} ({action}) names request {request_id} before its creation"
        return _changed(state, seq, request_id, action, body, keyed)
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"event {seq} ({action}): its body does not describe that action"


def _created(states: dict[int, DerivedRequest], seq: int, request_id: int, body: dict[str, Any],
             keyed: bool) -> str | None:
    """Derive a request from its 'created' event (see :func:`derive`)."""
    after = body["after"]
    if states.get(request_id) is not None:
        return f"event {seq} creates request {request_id} a second time"
    if after["kind"] not in KINDS or after["status"] != "received":
        return f"event {seq} creates request {request_id} with an invalid kind or status"
    state = states[request_id] = DerivedRequest(
        after["kind"], after["status"], after["received_at"], after["due_at"],
        after.get("requester"), after.get("notes"), legacy=not keyed)
    state.add_items(body["items"], keyed=keyed)
    return None


def _changed(state: DerivedRequest, seq: int, request_id: int, action: str, body: dict[str, Any],
             keyed: bool) -> str | None:
    """Apply a later event of a request to its derived state (see :func:`derive`)."""
    if action == "duplicate_received":
        state.add_items(body["items_added"], keyed=keyed)
    elif action in MOVES:
        if body["before"]["status"] != state.status \
                or body["after"]["status"] not in STATUSES:
            return (f"event {seq} ({action}) starts request {request_id} from a status its "
                    "history does not give it")
        if "rows" in body and not _row_counts(body["rows"]):
            return (f"event {seq} ({action}): its row counts are not variant -> item "
                    "digest -> count")
        state.status = body["after"]["status"]
        release = body.get("release")
        if release is not None and release not in state.releases:
            state.releases.append(release)
    elif action == "extend":
        if body["before"]["due_at"] != state.due_at:
            return (f"event {seq} (extend) starts request {request_id} from a due date its "
                    "history does not give it")
        state.due_at, state.extension_reason = body["after"]["due_at"], body["reason"]
    else:
        return f"event {seq} has an unknown action"
    return None


def _row_counts(rows: object) -> bool:
    """Whether an 'apply' event's ``rows`` is variant -> keyed item digest -> rows removed."""
    return isinstance(rows, dict) and all(
        isinstance(variant, str) and isinstance(counts, dict) and all(
            isinstance(digest, str) and len(digest) == 64 and type(n) is int and n >= 0
            for digest, n in counts.items())
        for variant, counts in rows.items())
