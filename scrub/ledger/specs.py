"""Requests as they arrive and as they are shown: the ledger's errors, the input limits every
write checks (so SQLite and PostgreSQL refuse the same input with the same message),
:class:`RequestSpec` (a request parsed, its items in canonical form) and :class:`RequestView`."""

from __future__ import annotations

import bisect
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import polars as pl

from scrub.errors import ExternalSourceError, ScrubError, UserInputError
from scrub.ledger.audit import utc
from scrub.ledger.models import ITEM_TYPES, KINDS, Request
from scrub.ledger.sealing import IdentitySeal
from scrub.urls import url_series

_T = TypeVar("_T")

#: The states a request is open in (its deadline runs).
OPEN = frozenset({"received", "verified", "scheduled"})
#: The widest actor the events table holds, and the widest release id recorded.
ACTOR_MAX = 200
RELEASE_MAX = 200
#: Request ids are SQL INTEGERs.
ID_MAX = 2**31 - 1


class LedgerError(UserInputError):
    """A request or an action on it is not valid (exit 2)."""


class TransitionError(LedgerError):
    """The action is not allowed from the request's current state."""


class LedgerIntegrityError(ExternalSourceError):
    """The ledger fails verification where a caller needs its items (exit 3)."""


class AppendOnlyError(ScrubError):
    """Something tried to change or delete a recorded event."""


def check_text(text: str, what: str) -> None:
    """Free text for a column or an event: no NUL or other control character but tab and
    newlines (PostgreSQL refuses NUL in text; SQLite would keep it)."""
    bad = [c for c in text if (c < " " and c not in "\t\n\r") or c == "\x7f"]
    if bad:
        raise LedgerError(f"{what} holds a control character (U+{ord(bad[0]):04X})",
                          hint="remove it; tabs and line breaks are allowed")


def check_actor(actor: str) -> str:
    """The actor events record: 1 to 200 printable characters."""
    if not isinstance(actor, str) or not actor.strip():
        raise LedgerError("--actor is empty", hint="name who acts (or set SCRUB_ACTOR)")
    if len(actor) > ACTOR_MAX:
        raise LedgerError(f"--actor is {len(actor)} characters long; at most {ACTOR_MAX}")
    if not actor.isprintable():
        raise LedgerError("--actor holds a control or other non-printable character")
    return actor


def check_release(release: str) -> str:
    """A release id to record: 1 to 200 printable characters."""
    if not release.strip() or len(release) > RELEASE_MAX or not release.isprintable():
        raise LedgerError(f"--release must be 1 to {RELEASE_MAX} printable characters "
                          f"(got {len(release)} character(s))")
    return release


def check_request_ids(request_ids: Sequence[int]) -> None:
    for request_id in request_ids:
        if not 1 <= request_id <= ID_MAX:
            raise LedgerError(f"no request {request_id} in the ledger (ids run from 1 to "
                              f"{ID_MAX})", hint="list them with `scrub requests ls`")


@dataclass
class RequestSpec:
    """A validated request to add: canonical item values, no identity in clear outside
    ``name``/``email`` (which are sealed before storage)."""

    kind: str
    received_at: dt.datetime
    name: str
    email: str
    items: list[tuple[str, str]]
    notes: str | None = None

    @classmethod
    def parse(cls, record: object, *, where: str) -> RequestSpec:
        """From the JSON shape of ``scrub requests add --file``; errors name ``where`` and the
        field, never a value."""
        return cls.parse_many([(record, where)])[0]

    @classmethod
    def parse_many(cls, records: Sequence[tuple[object, str]]) -> list[RequestSpec]:
        """Many records (each with where it came from, for errors). Item values are put in
        canonical form a column per item type at once (bulk import: docs/design/ledger.md); the
        first invalid one is named (record, item index, reason)."""
        heads: list[tuple[str, dt.datetime, str, str, str | None]] = []
        types: list[str] = []
        values: list[str] = []
        offsets = [0]
        for record, where in records:
            head, items = _request_fields(record, where)
            heads.append(head)
            for i, item in enumerate(items):
                if type(item) is dict:  # the common, well-formed case without calls
                    type_name, value = item.get("type"), item.get("value")
                    if (type(type_name) is str and type(value) is str and value.strip()
                            and type_name in _ITEM_TYPES):
                        types.append(type_name)
                        values.append(value)
                        continue
                type_name, value = _raw_item(item, f"{where}: items[{i}]")
                types.append(type_name)
                values.append(value)
            offsets.append(len(types))
        # a value UTF-8 cannot encode (a lone surrogate) is null here, then named below
        canonical = canonical_items(pl.Series(types, dtype=pl.String), url_series(values))
        missing = canonical.is_null()
        if missing.any():
            position = int(missing.arg_true()[0])
            n = bisect.bisect_right(offsets, position) - 1
            where = f"{records[n][1]}: items[{position - offsets[n]}]"
            normalize_item({"type": types[position], "value": values[position]}, where)
            raise LedgerError(f"{where}: not a valid {types[position]} item")
        texts = canonical.to_list()
        return [cls(kind, received, name, email,
                    list(dict.fromkeys(zip(types[a:b], texts[a:b], strict=True))), notes)
                for (kind, received, name, email, notes), a, b
                in zip(heads, offsets[:-1], offsets[1:], strict=True)]


def _request_fields(record: object, where: str
                    ) -> tuple[tuple[str, dt.datetime, str, str, str | None], list[object]]:
    """(kind, received_at, name, email, notes) of a record, checked, and its items (checked
    to be a non-empty list, the items themselves not yet)."""
    if not isinstance(record, dict):
        raise LedgerError(f"{where}: expected a JSON object")
    kind = _field(record, "kind", str, where)
    if kind not in KINDS:
        raise LedgerError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}")
    received = _parse_time(_field(record, "received_at", str, where), f"{where}: field "
                           "'received_at'")
    requester = _field(record, "requester", dict, where)
    name = _field(requester, "name", str, f"{where}: requester")
    email = _field(requester, "email", str, f"{where}: requester")
    if "@" not in email or len(email) > 320:
        raise LedgerError(f"{where}: field 'requester.email' is not an email address")
    items = _field(record, "items", list, where)
    if not items:
        raise LedgerError(f"{where}: field 'items' is empty (a request names what to remove)")
    notes = record.get("notes")
    if notes is not None:
        if not isinstance(notes, str):
            raise LedgerError(f"{where}: field 'notes' must be text")
        check_text(notes, f"{where}: field 'notes'")
    return (kind, received, name.strip(), email.strip(), notes), items


_ITEM_TYPES = frozenset(ITEM_TYPES)


def _raw_item(item: object, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise LedgerError(f"{where}: expected an object with 'type' and 'value'")
    type_name = _field(item, "type", str, where)
    value = _field(item, "value", str, where)
    if type_name not in ITEM_TYPES:
        raise LedgerError(f"{where}: unknown item type; choose from {', '.join(ITEM_TYPES)}",
                          hint="an item is TYPE then VALUE (e.g. url=https://...), in that "
                          "order")
    return type_name, value


def canonical_items(types: pl.Series, values: pl.Series) -> pl.Series:
    """Canonical text of each item value by its type (null where invalid), a column per
    type at once."""
    from scrub.lists.types import get_type

    out = pl.Series("canonical", [None] * len(values), dtype=pl.String)
    for type_name in types.unique().to_list():
        rows = (types == type_name).arg_true()
        out = out.scatter(rows, get_type(type_name).canonical_text_column(values.gather(rows)))
    return out


def normalize_item(item: object, where: str) -> tuple[str, str]:
    """(type, canonical value) of one item, or :class:`LedgerError` naming it."""
    from scrub.lists.types import get_type

    type_name, value = _raw_item(item, where)
    try:
        canonical = get_type(type_name).normalize(value)
    except ValueError as exc:  # a codec's message quotes the text: say what is wrong instead
        reason = "not UTF-8 text" if isinstance(exc, UnicodeError) else exc
        raise LedgerError(f"{where}: not a valid {type_name} item ({reason})") from None
    return type_name, str(canonical)


_EXPECTED: dict[type, str] = {str: "non-empty text", dict: "an object", list: "a list"}


def _field(record: dict[str, Any], name: str, kind: type[_T], where: str) -> _T:
    """``record[name]``, checked to be a ``kind`` (str, dict or list; text not blank)."""
    if name not in record or record[name] is None:
        raise LedgerError(f"{where}: missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise LedgerError(f"{where}: field '{name}' must be {_EXPECTED[kind]}")
    return value


def _parse_time(text: str, where: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LedgerError(f"{where} is not an ISO 8601 time (e.g. 2026-11-01T10:00:00Z)") \
            from None
    if value.tzinfo is None:
        raise LedgerError(f"{where} has no time zone (end it with Z or +00:00)")
    value = value.astimezone(dt.UTC)
    if not 1970 <= value.year <= 9000:  # a deadline 90 days on must still be a date
        raise LedgerError(f"{where} is out of range (years 1970 to 9000)")
    return value


@dataclass
class RequestView:
    """What ``show`` and ``--json`` print: state, dates, item types; item values and the
    identity only when asked for (with the key). A sealed value is shown as None."""

    id: int
    kind: str
    status: str
    received_at: str
    due_at: str
    overdue: bool
    extension_reason: str | None
    notes: str | None
    duplicate_of: int | None
    releases: list[str]
    items: list[dict[str, str | None]]
    requester: dict[str, str] | None = None
    history: list[dict[str, object]] = field(default_factory=list)


def view_of(request: Request, now: dt.datetime, seal: IdentitySeal | None) -> RequestView:
    """A stored request as :class:`RequestView` shows it; item values opened with ``seal``
    (LedgerIntegrityError when one does not open for its request), none without it."""
    items: list[dict[str, str | None]] = []
    for item in request.items:
        value = None
        if seal is not None:
            value = seal.open_item(item.sealed, request.id, item.type)
            if value is None:
                raise LedgerIntegrityError(
                    f"request {request.id}: item {item.id} does not open for it (altered, "
                    "or moved from another request)", hint="run `scrub ledger verify`")
        items.append({"type": item.type, "value": value})
    return RequestView(
        id=request.id, kind=request.kind, status=request.status,
        received_at=utc(request.received_at).isoformat(),
        due_at=utc(request.due_at).isoformat(),
        overdue=request.status in OPEN and utc(request.due_at) < now,
        extension_reason=request.extension_reason, notes=request.notes,
        duplicate_of=request.duplicate_of, releases=json.loads(request.releases or "[]"),
        items=items)
