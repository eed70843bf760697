"""The ledger service: the only writer of requests, items and events.

Every change is one transaction that also appends an event to the hash chain, so the state
and its history cannot drift apart. Appends are serialised on the chain head: a row lock on
PostgreSQL (``SELECT ... FOR UPDATE``), a write transaction on SQLite (``BEGIN IMMEDIATE``).
Requester identities are sealed with AES-GCM before they reach the database; events and
exports never carry them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, event, func, insert, or_, select, update
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
        raw_items = _field(record, "items", list, where)
        if not raw_items:
            raise LedgerError(f"{where}: field 'items' is empty (a request names what to remove)")
        items = [normalize_item(item, f"{where}: items[{i}]") for i, item in enumerate(raw_items)]
        notes = record.get("notes")
        if notes is not None and not isinstance(notes, str):
            raise LedgerError(f"{where}: field 'notes' must be text")
        return cls(kind, received, name.strip(), email.strip(), list(dict.fromkeys(items)),
                   notes)


def normalize_item(item: object, where: str) -> tuple[str, str]:
    """(type, canonical value) of one item, or :class:`LedgerError` naming it."""
    from scrub.lists.types import get_type

    if not isinstance(item, dict):
        raise LedgerError(f"{where}: expected an object with 'type' and 'value'")
    type_name = _field(item, "type", str, where)
    value = _field(item, "value", str, where)
    if type_name not in ITEM_TYPES:
        raise LedgerError(f"{where}: unknown item type {type_name!r}; "
                          f"choose from {', '.join(ITEM_TYPES)}")
    try:
        canonical = get_type(type_name).normalize(value)
    except ValueError as exc:
        raise LedgerError(f"{where}: not a valid {type_name} item ({exc})") from None
    if isinstance(canonical, bytes):
        canonical = canonical.hex()
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
    text = json.dumps([prev_hash, seq, request_id, utc(at).isoformat(), actor, action, body],
                      separators=(",", ":"), ensure_ascii=False)
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
        """Record many requests in one transaction: all or nothing."""
        seal = self._require_seal()
        out: list[tuple[int, bool]] = []
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            for spec in specs:
                lookup = seal.lookup(spec.email)
                first = self._overlap(session, lookup, spec.items)
                if first is not None:
                    known = {(i.type, i.value) for i in session.get(Request, first).items}
                    new = [item for item in spec.items if item not in known]
                    self._insert_items(session, first, new)
                    head = self._append(session, head, first, actor, "duplicate_received", {
                        "kind": spec.kind, "received_at": spec.received_at.isoformat(),
                        "items_added": sorted(item_digest(*i) for i in new)})
                    out.append((first, False))
                    continue
                request = Request(kind=spec.kind, status="received",
                                  received_at=spec.received_at,
                                  due_at=spec.received_at + DEADLINE,
                                  identity=seal.seal(spec.name, spec.email), key_id=seal.key_id,
                                  requester_hash=lookup, notes=spec.notes)
                session.add(request)
                session.flush()
                self._insert_items(session, request.id, spec.items)
                head = self._append(session, head, request.id, actor, "created", {
                    "after": {"kind": spec.kind, "status": "received",
                              "received_at": spec.received_at.isoformat(),
                              "due_at": (spec.received_at + DEADLINE).isoformat()},
                    "items": sorted(item_digest(*i) for i in spec.items)})
                out.append((request.id, True))
        return out

    def transition(self, request_id: int, action: str, actor: str, *,
                   reason: str | None = None, release: str | None = None) -> None:
        """Move a request through its lifecycle (see :data:`TRANSITIONS`)."""
        allowed, target = TRANSITIONS[action]
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            request = self._get(session, request_id)
            if request.status not in allowed:
                raise TransitionError(
                    f"request {request_id} is {request.status}; '{action}' needs it to be "
                    f"{' or '.join(sorted(allowed))}")
            before = {"status": request.status}
            request.status = target
            body: dict[str, object] = {"before": before, "after": {"status": target}}
            if reason:
                body["reason"] = reason
            if release:
                releases = json.loads(request.releases or "[]")
                if release not in releases:
                    releases.append(release)
                request.releases = json.dumps(releases)
                body["release"] = release
            self._append(session, head, request_id, actor, action, body)

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
            self._append(session, head, request_id, actor, "extend",
                         {"before": {"due_at": before}, "after": {"due_at": due.isoformat()},
                          "reason": reason})

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
            for seq, request_id, at, actor, action, body, prev_hash, stored in rows:
                if seq != expected_seq:
                    what = "missing" if seq > expected_seq else "out of order"
                    return ChainReport(count, prev, f"event {expected_seq} is {what} "
                                       f"(next found: {seq})", expected_seq)
                if prev_hash != prev:
                    return ChainReport(count, prev, f"event {seq} does not follow event "
                                       f"{seq - 1} (deleted, inserted or reordered events)", seq)
                if event_hash(prev, seq, request_id, at, actor, action, body) != stored:
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

    def _append(self, session: Session, head: tuple[int, str], request_id: int | None,
                actor: str, action: str, body: dict[str, object]) -> tuple[int, str]:
        seq, prev = head[0] + 1, head[1]
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        digest = event_hash(prev, seq, request_id, at, actor, action, text)
        session.execute(insert(Event).values(seq=seq, request_id=request_id, at=at, actor=actor,
                                             action=action, body=text, prev_hash=prev,
                                             hash=digest))
        session.execute(update(ChainHead).where(ChainHead.id == 1)
                        .values(seq=seq, hash=digest))
        return seq, digest

    @staticmethod
    def _insert_items(session: Session, request_id: int,
                      items: Iterable[tuple[str, str]]) -> None:
        rows = [{"request_id": request_id, "type": t, "value": v} for t, v in items]
        if rows:
            session.execute(insert(Item), rows)

    @staticmethod
    def _overlap(session: Session, lookup: str, items: list[tuple[str, str]]) -> int | None:
        if not items:
            return None
        pairs = [(Item.type == t) & (Item.value == v) for t, v in items[:500]]
        query = (select(func.min(Request.id)).join(Item, Item.request_id == Request.id)
                 .where(Request.requester_hash == lookup, Request.status != "withdrawn",
                        or_(*pairs)))
        return session.scalar(query)

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
