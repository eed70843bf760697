"""The ledger service: the only writer of requests, items and events.

Every change is one transaction that also appends an event to the chain, so the state and its
history cannot drift apart; ``verify`` (``scrub ledger verify``) re-derives the state from the
events and compares (:mod:`scrub.ledger.audit`). Appends are serialised on the chain head: a row
lock on PostgreSQL (``SELECT ... FOR UPDATE``), a write transaction on SQLite (``BEGIN
IMMEDIATE``). Every write needs the ledger key (:mod:`scrub.ledger.sealing`): identities and
items are sealed to their request before they reach the database, and each event's hash is an
HMAC under it. Events and exports never carry identities; events carry keyed item digests.
Text that reaches a column is checked first (:mod:`scrub.ledger.specs`).
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence

from sqlalchemy import Engine, Table, event, func, insert, select, update
from sqlalchemy.orm import ORMExecuteState, Session, selectinload

from scrub.crypto import KeyFileError
from scrub.ledger._history import ACCOUNT_ACTIONS
from scrub.ledger._lifecycle import DEADLINE, LONGEST, TRANSITIONS, move_request
from scrub.ledger._rows import earlier_items, insert_items, requests_by_id
from scrub.ledger.audit import ENFORCED, Anchor, ChainReport, LedgerReport, audit, utc
from scrub.ledger.db import require_current
from scrub.ledger.models import Base, ChainHead, Event, Request
from scrub.ledger.sealing import GENESIS, IdentitySeal, event_text
from scrub.ledger.specs import (
    OPEN,
    AppendOnlyError,
    LedgerError,
    LedgerIntegrityError,
    RequestSpec,
    RequestView,
    TransitionError,
    check_actor,
    check_release,
    check_request_ids,
    check_text,
    view_of,
)

__all__ = ["ENFORCED", "GENESIS", "OPEN", "TRANSITIONS", "Anchor", "AppendOnlyError",
           "ChainReport", "IdentitySeal", "Ledger", "LedgerError", "LedgerIntegrityError",
           "LedgerReport", "RequestSpec", "RequestView", "TransitionError", "utc"]

@event.listens_for(Event, "before_update")
def _no_event_update(*_args: object) -> None:
    raise AppendOnlyError("events are append-only: an event cannot be changed")


@event.listens_for(Event, "before_delete")
def _no_event_delete(*_args: object) -> None:
    raise AppendOnlyError("events are append-only: an event cannot be deleted")


@event.listens_for(Session, "do_orm_execute")
def _no_bulk_event_change(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(
            getattr(m, "class_", None) is Event for m in state.all_mappers):
        raise AppendOnlyError("events are append-only: no bulk update or delete of events")


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

    def assign(self, first: int) -> None:
        """The batch's new requests take the ids from ``first`` on, in order."""
        self._ids = list(range(first, first + self._created))

    def id(self, ref: int) -> int:
        return self._ids[-ref - 1] if ref < 0 else ref


#: An event to append: (request id, action, body).
_Pending = tuple[int | None, str, dict[str, object]]
#: Adds rows to a request's transaction: (session, request id, created).
Attach = Callable[[Session, int, bool], None]


def _table_of(model: type[Base]) -> Table:
    """A model's table, typed as one (the declarative base types ``__table__`` more loosely)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to one table")
    return table


class Ledger:
    """Requests, items and the event chain in one database. Reading states and dates needs
    no key; every write, item values, identities and ``verify`` need ``seal``."""

    def __init__(self, engine: Engine, *, seal: IdentitySeal | None = None,
                 check_schema: bool = True) -> None:
        self.engine = engine
        self.seal = seal
        if check_schema:
            require_current(engine)

    # ---- writing

    def add(self, spec: RequestSpec, actor: str, *, attach: Attach | None = None,
            join: bool = True) -> tuple[int, bool]:
        """Record a request; (id, created). A request from the same requester naming an item
        already requested is not duplicated: its new items join the first request.
        ``attach(session, id, created)`` adds rows of its own in the same transaction (the
        web intake's receipt). ``join=False``: always a request of its own (an email nobody
        checked yet must not reach another request: the web intake)."""
        return self.add_many([spec], actor, attach=attach, join=join)[0]

    def add_many(self, specs: Sequence[RequestSpec], actor: str, *,
                 attach: Attach | None = None, join: bool = True) -> list[tuple[int, bool]]:
        """Record many requests in one transaction: all or nothing; (id, created) for each.

        Works in bulk (one query for the requesters' earlier items, one insert per table; figures
        in docs/design/ledger.md). Requests are taken in order: one
        naming an item its requester already asked for, earlier in the ledger or earlier in the
        batch, joins the first such request. Items are matched by keyed digest.
        """
        seal = self.require_seal()
        check_actor(actor)
        lookups = [seal.lookup(spec.email) for spec in specs]
        digested = [[(t, v, seal.item_digest(t, v)) for t, v in spec.items] for spec in specs]
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            owner, members = earlier_items(session, set(lookups)) if join else ({}, {})
            refs = _Refs()
            plan: list[tuple[int, bool, list[tuple[str, str, str]]]] = []
            for lookup, items in zip(lookups, digested, strict=True):
                found = [owner[(lookup, d)] for _, _, d in items if join and (lookup, d) in owner]
                if found:
                    ref = min(found, key=refs.rank)
                    new = [item for item in items if item[2] not in members[ref]]
                else:
                    ref, new = refs.new(), items
                    members[ref] = set()
                members[ref].update(d for _, _, d in new)
                for _, _, d in new:
                    key = (lookup, d)
                    if key not in owner or refs.rank(ref) < refs.rank(owner[key]):
                        owner[key] = ref
                plan.append((ref, not found, new))
            refs.assign(self._next_id(session))
            self._insert_requests(session, [
                (refs.id(ref), spec, lookup) for (ref, created, _), spec, lookup
                in zip(plan, specs, lookups, strict=True) if created])
            items_rows: list[tuple[int, str, str, bytes]] = []
            events: list[_Pending] = []
            for (ref, created, new), spec, lookup in zip(plan, specs, lookups, strict=True):
                request_id = refs.id(ref)
                items_rows.extend((request_id, t, d, seal.seal_item(request_id, t, v))
                                  for t, v, d in new)
                digests = sorted(d for _, _, d in new)
                if created:
                    events.append((request_id, "created", {
                        "after": {"kind": spec.kind, "status": "received",
                                  "received_at": spec.received_at.isoformat(),
                                  "due_at": (spec.received_at + DEADLINE).isoformat(),
                                  "requester": lookup,
                                  "notes": seal.notes_digest(spec.notes)},
                        "items": digests}))
                else:
                    events.append((request_id, "duplicate_received", {
                        "kind": spec.kind, "received_at": spec.received_at.isoformat(),
                        "items_added": digests}))
            insert_items(session, items_rows)
            self._append_many(session, head, actor, events)
            if attach is not None:
                for ref, created, _ in plan:
                    attach(session, refs.id(ref), created)
        return [(refs.id(ref), created) for ref, created, _ in plan]

    def account_event(self, action: str, actor: str, body: Mapping[str, object], *,
                      change: Callable[[Session], None] | None = None) -> None:
        """Append a staff account event (it names no request; see ``ACCOUNT_ACTIONS``), with
        ``change`` made to the tables in the same transaction. ``body`` never holds a
        password, a session token or a requester's identity."""
        if action not in ACCOUNT_ACTIONS:
            raise LedgerError(f"'{action}' is not an account action")
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            if change is not None:
                change(session)
                session.flush()
            self._append_many(session, head, actor, [(None, action, dict(body))])

    def transition(self, request_id: int, action: str, actor: str, *,
                   reason: str | None = None, release: str | None = None) -> None:
        """Move a request through its lifecycle (see :data:`TRANSITIONS`)."""
        self.transition_many([request_id], action, actor, reason=reason, release=release)

    def transition_many(self, request_ids: Sequence[int], action: str, actor: str, *,
                        reason: str | None = None, release: str | None = None) -> None:
        """The same action on many requests in one transaction: all of them move, or none
        (the first one that cannot is named). ``apply`` with a release a request already
        records is refused."""
        self._move(request_ids, action, actor, reason=reason, release=release, strict=True)

    def mark_applied(self, request_ids: Sequence[int], release: str, actor: str, *,
                     reason: str | None = None,
                     rows: Mapping[int, Mapping[str, Mapping[str, int]]] | None = None
                     ) -> list[int]:
        """Record that ``release`` applied these requests: those that can be applied and do
        not record it yet move (one transaction); the others are left as they are. The ids
        that moved; calling it again for the same release records nothing more.

        ``rows``: request id -> variant -> keyed item digest -> rows that variant removed
        which the item matches (items that matched nothing may be left out); recorded in
        each request's 'apply' event, which ``export`` reads."""
        return self._move(request_ids, "apply", actor, reason=reason, release=release,
                          strict=False, rows=rows)

    def extend(self, request_id: int, actor: str, *, reason: str, days: int = 60) -> None:
        """Push the deadline back by ``days`` (at most 90 days after receipt in all)."""
        self.require_seal()
        check_actor(actor)
        check_request_ids([request_id])
        if not reason.strip():
            raise LedgerError("an extension needs a reason (--reason)")
        check_text(reason, "--reason")
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            request = self._get(session, request_id)
            if request.status not in OPEN:
                raise TransitionError(f"request {request_id} is {request.status}; only open "
                                      "requests can be extended")
            limit = utc(request.received_at) + LONGEST
            if not 0 < days <= LONGEST.days or utc(request.due_at) + dt.timedelta(days=days) \
                    > limit:
                raise LedgerError(f"request {request_id}: the deadline can move to at most "
                                  f"{limit.date()} (90 days after receipt)")
            due = utc(request.due_at) + dt.timedelta(days=days)
            before = utc(request.due_at).isoformat()
            request.due_at, request.extension_reason = due, reason
            self._append_many(session, head, actor, [(request_id, "extend", {
                "before": {"due_at": before}, "after": {"due_at": due.isoformat()},
                "reason": reason})])

    # ---- reading

    def show(self, request_id: int, *, identity: bool = False, items: bool = False,
             now: dt.datetime | None = None) -> RequestView:
        """One request and its history; with ``items``/``identity`` (which need the key) its
        item values and requester, opened."""
        check_request_ids([request_id])
        seal = self.require_seal() if identity or items else None
        with Session(self.engine) as session:
            request = self._get(session, request_id)
            if seal is not None and request.key_id != seal.key_id:
                raise KeyFileError(f"request {request_id} was sealed with key {request.key_id}, "
                                   f"not with this key ({seal.key_id})",
                                   hint="pass the ledger's key with --key-file")
            view = view_of(request, now or dt.datetime.now(dt.UTC),
                              seal if items else None)
            if identity and seal is not None:
                view.requester = seal.open(request.identity, request.key_id, request.id)
            view.history = [
                {"seq": e.seq, "at": utc(e.at).isoformat(), "actor": e.actor,
                 "action": e.action, **json.loads(e.body)}
                for e in session.scalars(select(Event).where(Event.request_id == request_id)
                                         .order_by(Event.seq))]
            return view

    def list(self, *, status: str | None = None, kind: str | None = None,
             overdue: bool = False, now: dt.datetime | None = None) -> list[RequestView]:
        """Requests with their item types (values stay sealed)."""
        now = now or dt.datetime.now(dt.UTC)
        # the items of all listed requests in one more query, not one query per request
        query = select(Request).options(selectinload(Request.items)).order_by(Request.id)
        if status:
            query = query.where(Request.status == status)
        if kind:
            query = query.where(Request.kind == kind)
        if overdue:
            query = query.where(Request.status.in_(OPEN), Request.due_at < now)
        with Session(self.engine) as session:
            return [view_of(r, now, None) for r in session.scalars(query)]

    def enforced_items(self) -> Iterator[tuple[int, str, str, str]]:
        """(request id, kind, item type, value) of every request releases must honour, as
        the verified history says (:meth:`verify`): a ledger that fails verification gives
        nothing but a :class:`LedgerIntegrityError`, so an edited status or a deleted item
        cannot make a release skip a request."""
        report, items = audit(self.engine, self.require_seal(), collect=True)
        if not report.ok:
            raise LedgerIntegrityError(f"the ledger fails verification: {report.problem}",
                                       hint="run `scrub ledger verify` and restore the "
                                       "database from a backup")
        yield from items

    def watermark(self) -> tuple[int, str]:
        """(events, last event hash): what a release records of the ledger's state."""
        with Session(self.engine) as session:
            head = session.get(ChainHead, 1)
            return (head.seq, head.hash) if head else (0, GENESIS)

    def export(self, request_id: int, *, identity: bool = True) -> dict[str, object]:
        """The data subject's report: their request, what it named, where it was applied.
        Each item lists, per release and variant whose build counted it, the rows removed
        that it matches (0 when none); releases recorded by hand (``requests apply``) count
        nothing and appear only in ``removed_in_releases``. ``identity=False``: the
        requester is not opened (None)."""
        view = self.show(request_id, identity=identity, items=True)
        seal = self.require_seal()
        counted = [(e["release"], rows) for e in view.history
                   if e["action"] == "apply" and isinstance(rows := e.get("rows"), dict)]
        items = []
        for entry in view.items:
            digest = seal.item_digest(str(entry["type"]), str(entry["value"]))
            items.append({**entry, "rows_removed": [
                {"release": release, "variant": variant, "rows": int(counts.get(digest, 0))}
                for release, per_variant in counted
                for variant, counts in per_variant.items()]})
        return {
            "request": view.id, "kind": view.kind, "status": view.status,
            "received_at": view.received_at, "due_at": view.due_at,
            "requester": view.requester,
            "items": items,
            "removed_in_releases": view.releases,
            "history": [{k: e[k] for k in ("at", "action", "release") if k in e}
                        for e in view.history],
        }

    def verify(self, anchors: Sequence[Anchor] = (), *, batch: int = 20_000,
               progress: bool = False) -> LedgerReport:
        """Authenticate the chain (HMAC under the ledger key), check it still holds the heads
        signed releases recorded (``anchors``), and compare every request and item with what
        its events say (``progress``: counts on stderr). See :mod:`scrub.ledger.audit`."""
        seal = self.require_seal()
        self._check_key(seal)
        return audit(self.engine, seal, anchors, batch=batch, progress=progress)[0]

    verify_chain = verify

    # ---- internals

    def require_seal(self) -> IdentitySeal:
        if self.seal is None:
            raise KeyFileError("this needs the ledger key (identities and items are sealed, "
                               "and the history is authenticated with it)",
                               hint="pass --key-file or set SCRUB_KEY_FILE")
        return self.seal

    def check_key(self) -> None:
        """KeyFileError unless this ledger holds its key (the one its history is keyed with)."""
        self._check_key(self.require_seal())

    def _check_key(self, seal: IdentitySeal) -> None:
        with self.engine.connect() as connection:
            recorded = connection.execute(select(ChainHead.key_id)).scalar()
        if recorded is not None and recorded != seal.key_id:
            raise KeyFileError(f"this ledger's history is keyed with key {recorded}, not with "
                               f"this key ({seal.key_id})",
                               hint="pass the ledger's key with --key-file")

    def _move(self, request_ids: Sequence[int], action: str, actor: str, *,
              reason: str | None, release: str | None, strict: bool,
              rows: Mapping[int, Mapping[str, Mapping[str, int]]] | None = None
              ) -> builtins.list[int]:
        """Move requests by ``action`` in one transaction, an event each (``strict``: all of
        them or none, the first that cannot named; otherwise those that can). The ids moved."""
        self.require_seal()
        check_actor(actor)
        if reason is not None:
            check_text(reason, "--reason")
        if release is not None:
            check_release(release)
        wanted = list(dict.fromkeys(request_ids))
        check_request_ids(wanted)
        with Session(self.engine) as session, session.begin():
            head = self._lock_head(session)
            found = requests_by_id(session, wanted)
            events: list[_Pending] = []
            moved: list[int] = []
            for request_id in wanted:
                body = move_request(found.get(request_id), request_id, action, reason=reason,
                                    release=release, strict=strict, rows=rows)
                if body is not None:
                    events.append((request_id, action, body))
                    moved.append(request_id)
            session.flush()
            self._append_many(session, head, actor, events)
        return moved

    def _lock_head(self, session: Session) -> tuple[int, str]:
        """Lock the chain head; refuse a key other than the one the chain is keyed with."""
        seal = self.require_seal()
        query = select(ChainHead).where(ChainHead.id == 1)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        head = session.scalars(query).one()
        if head.key_id is not None and head.key_id != seal.key_id:
            raise KeyFileError(f"this ledger's history is keyed with key {head.key_id}, not "
                               f"with this key ({seal.key_id})",
                               hint="pass the ledger's key with --key-file")
        return head.seq, head.hash

    def _append_many(self, session: Session, head: tuple[int, str], actor: str,
                     events: Sequence[_Pending]) -> None:
        """Append events in order with one insert (in chunks) and one head update; each
        event's hash is the ledger key's MAC over it and the previous hash."""
        seal = self.require_seal()
        seq, prev = head
        at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        at_iso = at.isoformat()
        rows = []
        for request_id, action, body in events:
            seq += 1
            text = json.dumps(body, sort_keys=True, separators=(",", ":"))
            digest = seal.mac(event_text(prev, seq, request_id, at_iso, actor, action, text))
            rows.append({"seq": seq, "request_id": request_id, "at": at, "actor": actor,
                         "action": action, "body": text, "prev_hash": prev, "hash": digest})
            prev = digest
        for start in range(0, len(rows), _CHUNK):
            session.connection().execute(insert(_table_of(Event)), rows[start:start + _CHUNK])
        if rows:
            session.execute(update(ChainHead).where(ChainHead.id == 1)
                            .values(seq=seq, hash=prev, key_id=seal.key_id))

    @staticmethod
    def _next_id(session: Session) -> int:
        """The next request id (under the chain head's lock: one writer at a time). Ids are
        given, not drawn from a sequence, because each identity and item is sealed to its id
        before the row is written."""
        return int(session.execute(select(func.coalesce(func.max(Request.id), 0)))
                   .scalar_one()) + 1

    def _insert_requests(self, session: Session,
                         created: Sequence[tuple[int, RequestSpec, str]]) -> None:
        """Insert new requests with the given ids, each identity sealed to its id."""
        seal = self.require_seal()
        rows = [{"id": request_id, "kind": spec.kind, "status": "received",
                 "received_at": spec.received_at, "due_at": spec.received_at + DEADLINE,
                 "identity": seal.seal(spec.name, spec.email, request_id),
                 "key_id": seal.key_id, "requester_hash": lookup, "notes": spec.notes}
                for request_id, spec, lookup in created]
        for start in range(0, len(rows), _CHUNK):
            session.connection().execute(insert(_table_of(Request)), rows[start:start + _CHUNK])

    @staticmethod
    def _get(session: Session, request_id: int) -> Request:
        request = session.get(Request, request_id)
        if request is None:
            raise LedgerError(f"no request {request_id} in the ledger",
                              hint="list them with `scrub requests ls`")
        return request
