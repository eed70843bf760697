"""The ledger service: the only writer of requests, items and events.

Every change is one transaction that also appends an event to the hash chain, so the state
and its history cannot drift apart. Appends are serialised on the chain head: a row lock on
PostgreSQL (``SELECT ... FOR UPDATE``), a write transaction on SQLite (``BEGIN IMMEDIATE``).
Requester identities are sealed with AES-GCM before they reach the database; events and
exports never carry them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, event, insert, select, update
from sqlalchemy.orm import Session

from scrub.crypto import KeyFileError, key_id
from scrub.errors import ScrubError, UserInputError
from scrub.ledger.db import require_current
from scrub.ledger.models import ITEM_TYPES, KINDS, ChainHead, Event, Item, Request

DEADLINE = dt.timedelta(days=30)
LONGEST = dt.timedelta(days=90)
GENESIS = "0" * 64

#: Allowed transitions: action -> (states it may start from, state it leads to).
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "verify": (frozenset({"received"}), "verified"),
    "reject": (frozenset({"received"}), "rejected"),
    "schedule": (frozenset({"verified"}), "scheduled"),
    "apply": (frozenset({"verified", "scheduled", "applied"}), "applied"),
    "close": (frozenset({"applied", "rejected"}), "closed"),
    "withdraw": (frozenset({"received", "verified", "scheduled"}), "withdrawn"),
}
OPEN = frozenset({"received", "verified", "scheduled"})
#: Requests whose items every later release must honour.
ENFORCED = frozenset({"verified", "scheduled", "applied", "closed"})


class LedgerError(UserInputError):
    """A request or an action on it is not valid (exit 2)."""


class TransitionError(LedgerError):
    """The action is not allowed from the request's current state."""


class AppendOnlyError(ScrubError):
    """Something tried to change or delete a recorded event."""


@event.listens_for(Event, "before_update")
def _no_event_update(*_args: object) -> None:
    raise AppendOnlyError("events are append-only: an event cannot be changed")


@event.listens_for(Event, "before_delete")
def _no_event_delete(*_args: object) -> None:
    raise AppendOnlyError("events are append-only: an event cannot be deleted")


@event.listens_for(Session, "do_orm_execute")
def _no_bulk_event_change(state) -> None:  # type: ignore[no-untyped-def]
    if (state.is_update or state.is_delete) and any(
            getattr(m, "class_", None) is Event for m in state.all_mappers):
        raise AppendOnlyError("events are append-only: no bulk update or delete of events")


# --------------------------------------------------------------------------- identities


class IdentitySeal:
    """Seals requester identities (AES-GCM) and makes keyed lookup hashes of emails."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        self._lookup = hmac.new(key, b"scrub-ledger-requester-lookup", hashlib.sha256).digest()

    def seal(self, name: str, email: str) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps({"name": name, "email": email}, sort_keys=True).encode()
        return nonce + self._aead.encrypt(nonce, plain, b"scrub-ledger-identity")

    def open(self, sealed: bytes, stored_key_id: str) -> dict[str, str]:
        if stored_key_id != self.key_id:
            raise KeyFileError(f"the identity was sealed with key {stored_key_id}, "
                               f"not with this key ({self.key_id})",
                               hint="pass the ledger's key with --key-file")
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], b"scrub-ledger-identity")
        except InvalidTag:
            raise KeyFileError("a sealed identity does not open (altered record)") from None
        return json.loads(plain)

    def lookup(self, email: str) -> str:
        normal = email.strip().lower().encode()
        return hmac.new(self._lookup, normal, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- request specs


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
        canonical form a column per item type at once, so a batch of a million items parses
        in seconds; the first invalid one is named (record, item index, reason)."""
        heads: list[tuple[str, dt.datetime, str, str, str | None]] = []
        types: list[str] = []
        values: list[str] = []
        offsets = [0]
        for record, where in records:
            heads.append(_request_fields(record, where))
            for i, item in enumerate(record["items"]):  # type: ignore[index]
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
        canonical = canonical_items(pl.Series(types, dtype=pl.String),
                                    pl.Series(values, dtype=pl.String))
        missing = canonical.is_null()
        if missing.any():
            position = int(missing.arg_true()[0])
            n = bisect.bisect_right(offsets, position) - 1
            where = f"{records[n][1]}: items[{position - offsets[n]}]"
            normalize_item({"type": types[position], "value": values[position]}, where)
            raise LedgerError(f"{where}: not a valid {types[position]} item")
        texts = canonical.to_list()
        return [cls(kind, received, name, email,
                    list(dict.fromkeys(zip(types[a:b], texts[a:b]))), notes)
                for (kind, received, name, email, notes), a, b
                in zip(heads, offsets, offsets[1:])]


def _request_fields(record: object, where: str
                    ) -> tuple[str, dt.datetime, str, str, str | None]:
    """kind, received_at, name, email and notes of a record, checked; its items are a
    non-empty list."""
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
    if not _field(record, "items", list, where):
        raise LedgerError(f"{where}: field 'items' is empty (a request names what to remove)")
    notes = record.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise LedgerError(f"{where}: field 'notes' must be text")
    return kind, received, name.strip(), email.strip(), notes


_ITEM_TYPES = frozenset(ITEM_TYPES)


def _raw_item(item: object, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise LedgerError(f"{where}: expected an object with 'type' and 'value'")
    type_name = _field(item, "type", str, where)
    value = _field(item, "value", str, where)
    if type_name not in ITEM_TYPES:
        raise LedgerError(f"{where}: unknown item type {type_name!r}; "
                          f"choose from {', '.join(ITEM_TYPES)}")
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
    except ValueError as exc:
        raise LedgerError(f"{where}: not a valid {type_name} item ({exc})") from None
    return type_name, str(canonical)


def _field(record: dict, name: str, kind: type, where: str):  # type: ignore[no-untyped-def]
    if name not in record or record[name] is None:
        raise LedgerError(f"{where}: missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        expected = {str: "non-empty text", dict: "an object", list: "a list"}[kind]
        raise LedgerError(f"{where}: field '{name}' must be {expected}")
    return value


def _parse_time(text: str, where: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LedgerError(f"{where} is not an ISO 8601 time (e.g. 2026-11-01T10:00:00Z)") \
            from None
    if value.tzinfo is None:
        raise LedgerError(f"{where} has no time zone (end it with Z or +00:00)")
    return value.astimezone(dt.timezone.utc)


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------- the chain


def event_hash(prev_hash: str, seq: int, request_id: int | None, at: dt.datetime, actor: str,
               action: str, body: str) -> str:
    """sha256 over the previous hash and this event's canonical fields."""
    return _chain_digest(prev_hash, seq, request_id, utc(at).isoformat(), actor, action, body)


_CANONICAL_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _chain_digest(prev_hash: str, seq: int, request_id: int | None, at_iso: str, actor: str,
                  action: str, body: str) -> str:
    text = _CANONICAL_JSON.encode([prev_hash, seq, request_id, at_iso, actor, action, body])
    return hashlib.sha256(text.encode()).hexdigest()


def item_digest(type_name: str, value: str) -> str:
    """What events record of an item: a digest that commits to it without repeating it."""
    return hashlib.sha256(f"{type_name}\x00{value}".encode()).hexdigest()


@dataclass
class ChainReport:
    events: int
    head: str
    problem: str | None = None
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class RequestView:
    """What ``show`` and ``--json`` print: state, dates, items; the identity only on request."""

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
    items: list[dict[str, str]]
    requester: dict[str, str] | None = None
    history: list[dict[str, object]] = field(default_factory=list)


_CHUNK = 50_000


class _Refs:
    """Names requests while a batch is planned: a stored request by its id, the k-th request
    the batch creates by ``-k`` until its id is known. Batch requests come after stored ones."""

    def __init__(self) -> None:
        self._created = 0
        self._ids: list[int] = []

    def new(self) -> int:
        self._created += 1
        return -self._created

    @staticmethod
    def rank(ref: int) -> tuple[int, int]:
        return (1, -ref) if ref < 0 else (0, ref)

    def assign(self, ids: list[int]) -> None:
        if len(ids) != self._created:
            raise ScrubError(f"the database returned {len(ids)} ids for "
                             f"{self._created} new requests")
        self._ids = ids

    def id(self, ref: int) -> int:
        return self._ids[-ref - 1] if ref < 0 else ref


class Ledger:
    """Requests, items and the event chain in one database."""

    def __init__(self, engine: Engine, *, seal: IdentitySeal | None = None,
                 check_schema: bool = True) -> None:
        self.engine = engine
        self.seal = seal
        if check_schema:
            require_current(engine)

    # ---- writing

    def add(self, spec: RequestSpec, actor: str) -> tuple[int, bool]:
        """Record a request; (id, created). A request from the same requester naming an item
        already requested is not duplicated: its new items join the first request."""
        return self.add_many([spec], actor)[0]

    def add_many(self, specs: Sequence[RequestSpec], actor: str) -> list[tuple[int, bool]]:
        """Record many requests in one transaction: all or nothing; (id, created) for each.

        Works in bulk (one query for the requesters' earlier items, one insert per table), so a
        batch of 100k requests with 1M items takes seconds. Requests are taken in order: one
        naming an item its requester already asked for, earlier in the ledger or earlier in the
        batch, joins the first such request.
        """
        seal = self._require_seal()
        lookups = [seal.lookup(spec.email) for spec in specs]
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            owner, members = self._earlier_items(session, set(lookups))
            refs = _Refs()
            plan: list[tuple[int, bool, list[tuple[str, str]]]] = []
            for spec, lookup in zip(specs, lookups):
                found = [owner[key] for key in ((lookup, t, v) for t, v in spec.items)
                         if key in owner]
                if found:
                    ref = min(found, key=refs.rank)
                    new = [item for item in spec.items if item not in members[ref]]
                else:
                    ref, new = refs.new(), spec.items
                    members[ref] = set()
                members[ref].update(new)
                for t, v in new:
                    key = (lookup, t, v)
                    if key not in owner or refs.rank(ref) < refs.rank(owner[key]):
                        owner[key] = ref
                plan.append((ref, not found, new))
            refs.assign(self._insert_requests(session, [
                (spec, lookup) for (_, created, _), spec, lookup in zip(plan, specs, lookups)
                if created]))
            items: list[tuple[int, str, str]] = []
            events: list[tuple[int, str, dict[str, object]]] = []
            for (ref, created, new), spec in zip(plan, specs):
                request_id = refs.id(ref)
                items.extend((request_id, t, v) for t, v in new)
                digests = sorted(item_digest(*item) for item in new)
                if created:
                    events.append((request_id, "created", {
                        "after": {"kind": spec.kind, "status": "received",
                                  "received_at": spec.received_at.isoformat(),
                                  "due_at": (spec.received_at + DEADLINE).isoformat()},
                        "items": digests}))
                else:
                    events.append((request_id, "duplicate_received", {
                        "kind": spec.kind, "received_at": spec.received_at.isoformat(),
                        "items_added": digests}))
            self._insert_items(session, items)
            self._append_many(session, head, actor, events)
        return [(refs.id(ref), created) for ref, created, _ in plan]

    def transition(self, request_id: int, action: str, actor: str, *,
                   reason: str | None = None, release: str | None = None) -> None:
        """Move a request through its lifecycle (see :data:`TRANSITIONS`)."""
        self.transition_many([request_id], action, actor, reason=reason, release=release)

    def transition_many(self, request_ids: Sequence[int], action: str, actor: str, *,
                        reason: str | None = None, release: str | None = None) -> None:
        """The same action on many requests in one transaction: all of them move, or none
        (the first one that cannot is named)."""
        allowed, target = TRANSITIONS[action]
        wanted = list(dict.fromkeys(request_ids))
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            found: dict[int, Request] = {}
            for start in range(0, len(wanted), 2_000):
                chunk = wanted[start:start + 2_000]
                found.update((r.id, r) for r in session.scalars(
                    select(Request).where(Request.id.in_(chunk))))
            events: list[tuple[int | None, str, dict[str, object]]] = []
            for request_id in wanted:
                request = found.get(request_id)
                if request is None:
                    raise LedgerError(f"no request {request_id} in the ledger",
                                      hint="list them with `scrub requests ls`")
                if request.status not in allowed:
                    raise TransitionError(
                        f"request {request_id} is {request.status}; '{action}' needs it to be "
                        f"{' or '.join(sorted(allowed))}")
                body: dict[str, object] = {"before": {"status": request.status},
                                           "after": {"status": target}}
                request.status = target
                if reason:
                    body["reason"] = reason
                if release:
                    releases = json.loads(request.releases or "[]")
                    if release not in releases:
                        releases.append(release)
                    request.releases = json.dumps(releases)
                    body["release"] = release
                events.append((request_id, action, body))
            session.flush()
            self._append_many(session, head, actor, events)

    def extend(self, request_id: int, actor: str, *, reason: str, days: int = 60) -> None:
        """Push the deadline back by ``days`` (at most 90 days after receipt in all)."""
        if not reason.strip():
            raise LedgerError("an extension needs a reason (--reason)")
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            request = self._get(session, request_id)
            if request.status not in OPEN:
                raise TransitionError(f"request {request_id} is {request.status}; only open "
                                      "requests can be extended")
            due = utc(request.due_at) + dt.timedelta(days=days)
            limit = utc(request.received_at) + LONGEST
            if days <= 0 or due > limit:
                raise LedgerError(f"request {request_id}: the deadline can move to at most "
                                  f"{limit.date()} (90 days after receipt)")
            before = utc(request.due_at).isoformat()
            request.due_at, request.extension_reason = due, reason
            self._append_many(session, head, actor, [(request_id, "extend", {
                "before": {"due_at": before}, "after": {"due_at": due.isoformat()},
                "reason": reason})])

    # ---- reading

    def show(self, request_id: int, *, identity: bool = False,
             now: dt.datetime | None = None) -> RequestView:
        with Session(self.engine) as session:
            request = self._get(session, request_id)
            view = self._view(request, now or dt.datetime.now(dt.timezone.utc))
            if identity:
                view.requester = self._require_seal().open(request.identity, request.key_id)
            view.history = [
                {"seq": e.seq, "at": utc(e.at).isoformat(), "actor": e.actor,
                 "action": e.action, **json.loads(e.body)}
                for e in session.scalars(select(Event).where(Event.request_id == request_id)
                                         .order_by(Event.seq))]
            return view

    def list(self, *, status: str | None = None, kind: str | None = None,
             overdue: bool = False, now: dt.datetime | None = None) -> list[RequestView]:
        now = now or dt.datetime.now(dt.timezone.utc)
        query = select(Request).order_by(Request.id)
        if status:
            query = query.where(Request.status == status)
        if kind:
            query = query.where(Request.kind == kind)
        if overdue:
            query = query.where(Request.status.in_(OPEN), Request.due_at < now)
        with Session(self.engine) as session:
            return [self._view(r, now) for r in session.scalars(query)]

    def enforced_items(self) -> Iterator[tuple[int, str, str, str]]:
        """(request id, kind, item type, value) of every request releases must honour."""
        query = (select(Request.id, Request.kind, Item.type, Item.value)
                 .join(Item, Item.request_id == Request.id)
                 .where(Request.status.in_(ENFORCED)).order_by(Request.id, Item.id))
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                yield tuple(row)  # type: ignore[misc]

    def watermark(self) -> tuple[int, str]:
        """(events, last event hash): what a release records of the ledger's state."""
        with Session(self.engine) as session:
            head = session.get(ChainHead, 1)
            return (head.seq, head.hash) if head else (0, GENESIS)

    def export(self, request_id: int) -> dict[str, object]:
        """The data subject's report: their request, what it named, where it was applied."""
        view = self.show(request_id, identity=True)
        return {
            "request": view.id, "kind": view.kind, "status": view.status,
            "received_at": view.received_at, "due_at": view.due_at,
            "requester": view.requester,
            "items": view.items,
            "removed_in_releases": view.releases,
            "history": [{k: e[k] for k in ("at", "action") if k in e} for e in view.history],
        }

    def verify_chain(self, *, batch: int = 20_000) -> ChainReport:
        """Recompute the chain: names the first event that was edited, deleted, inserted or
        moved, or a head that does not match the last event."""
        prev, count, expected_seq = GENESIS, 0, 1
        columns = (Event.seq, Event.request_id, Event.at, Event.actor, Event.action,
                   Event.body, Event.prev_hash, Event.hash)
        with self.engine.connect() as connection:
            rows = connection.execution_options(yield_per=batch).execute(
                select(*columns).order_by(Event.seq))
            last_at, at_iso = None, ""
            for seq, request_id, at, actor, action, body, prev_hash, stored in rows:
                if at != last_at:  # events of one batch share their time
                    last_at, at_iso = at, utc(at).isoformat()
                if seq != expected_seq:
                    what = "missing" if seq > expected_seq else "out of order"
                    return ChainReport(count, prev, f"event {expected_seq} is {what} "
                                       f"(next found: {seq})", expected_seq)
                if prev_hash != prev:
                    return ChainReport(count, prev, f"event {seq} does not follow event "
                                       f"{seq - 1} (deleted, inserted or reordered events)", seq)
                if _chain_digest(prev, seq, request_id, at_iso, actor, action, body) != stored:
                    return ChainReport(count, prev, f"event {seq} was altered", seq)
                prev, count, expected_seq = stored, count + 1, seq + 1
            head = connection.execute(select(ChainHead.seq, ChainHead.hash)).first()
        if head is None or (head.seq, head.hash) != (count, prev):
            return ChainReport(count, prev, "the chain head does not match the last event "
                               "(events after it were deleted)", count + 1)
        return ChainReport(count, prev)

    # ---- internals

    def _require_seal(self) -> IdentitySeal:
        if self.seal is None:
            raise KeyFileError("this needs the ledger key (requester identities are "
                               "encrypted)", hint="pass --key-file or set SCRUB_KEY_FILE")
        return self.seal

    def _lock_head(self, session: Session) -> tuple[int, str]:
        query = select(ChainHead).where(ChainHead.id == 1)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        head = session.scalars(query).one()
        return head.seq, head.hash

    def _append_many(self, session: Session, head: tuple[int, str], actor: str,
                     events: Sequence[tuple[int | None, str, dict[str, object]]]) -> None:
        """Append events in order with one insert (in chunks) and one head update."""
        seq, prev = head
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        rows = []
        for request_id, action, body in events:
            seq += 1
            text = json.dumps(body, sort_keys=True, separators=(",", ":"))
            digest = event_hash(prev, seq, request_id, at, actor, action, text)
            rows.append({"seq": seq, "request_id": request_id, "at": at, "actor": actor,
                         "action": action, "body": text, "prev_hash": prev, "hash": digest})
            prev = digest
        for start in range(0, len(rows), _CHUNK):
            session.connection().execute(insert(Event.__table__), rows[start:start + _CHUNK])
        if rows:
            session.execute(update(ChainHead).where(ChainHead.id == 1)
                            .values(seq=seq, hash=prev))

    @staticmethod
    def _earlier_items(session: Session, lookups: set[str]
                       ) -> tuple[dict[tuple[str, str, str], int], dict[int, set[tuple[str, str]]]]:
        """For the requesters of a batch: (requester hash, type, value) -> the first request
        (not withdrawn) naming it, and the items of each of those requests."""
        owner: dict[tuple[str, str, str], int] = {}
        members: dict[int, set[tuple[str, str]]] = {}
        wanted = sorted(lookups)
        for start in range(0, len(wanted), 2_000):
            query = (select(Request.requester_hash, Item.type, Item.value, Request.id)
                     .join(Item, Item.request_id == Request.id)
                     .where(Request.requester_hash.in_(wanted[start:start + 2_000]),
                            Request.status != "withdrawn"))
            for lookup, type_name, value, request_id in session.execute(query):
                key = (lookup, type_name, value)
                owner[key] = min(owner.get(key, request_id), request_id)
                members.setdefault(request_id, set()).add((type_name, value))
        return owner, members

    @staticmethod
    def _insert_items(session: Session, items: Sequence[tuple[int, str, str]]) -> None:
        """Plain rows straight to the driver's executemany: a million items in seconds."""
        connection = session.connection()
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {Item.__tablename__} (request_id, type, value) "
               f"VALUES ({mark}, {mark}, {mark})")
        for start in range(0, len(items), _CHUNK):
            connection.exec_driver_sql(sql, list(items[start:start + _CHUNK]))

    def _insert_requests(self, session: Session,
                         created: Sequence[tuple[RequestSpec, str]]) -> list[int]:
        """Insert new requests (sealing identities); their ids, in order."""
        seal = self._require_seal()
        rows = [{"kind": spec.kind, "status": "received", "received_at": spec.received_at,
                 "due_at": spec.received_at + DEADLINE, "identity": seal.seal(spec.name,
                                                                               spec.email),
                 "key_id": seal.key_id, "requester_hash": lookup, "notes": spec.notes}
                for spec, lookup in created]
        ids: list[int] = []
        table = Request.__table__
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        for start in range(0, len(rows), _CHUNK):
            ids.extend(session.connection().scalars(statement, rows[start:start + _CHUNK]))
        return ids

    @staticmethod
    def _get(session: Session, request_id: int) -> Request:
        request = session.get(Request, request_id)
        if request is None:
            raise LedgerError(f"no request {request_id} in the ledger",
                              hint="list them with `scrub requests ls`")
        return request

    @staticmethod
    def _view(request: Request, now: dt.datetime) -> RequestView:
        return RequestView(
            id=request.id, kind=request.kind, status=request.status,
            received_at=utc(request.received_at).isoformat(),
            due_at=utc(request.due_at).isoformat(),
            overdue=request.status in OPEN and utc(request.due_at) < now,
            extension_reason=request.extension_reason, notes=request.notes,
            duplicate_of=request.duplicate_of, releases=json.loads(request.releases or "[]"),
            items=[{"type": i.type, "value": i.value} for i in request.items])
