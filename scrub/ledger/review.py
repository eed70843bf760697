"""What the staff console reads: a page of requests (overdue first, then by due date) and one
request's history checked on its own.

The per-request check authenticates each of the request's events under the ledger key and
against the hash of the event before it, re-derives the request's state from them and compares
it with its row: cheap enough for every page view. ``scrub ledger verify`` (the admin page's
full check) is what also proves no event was cut from the end or inserted elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from scrub.ledger._history import DerivedRequest, derive
from scrub.ledger.audit import utc
from scrub.ledger.models import Event, Item, Request
from scrub.ledger.sealing import GENESIS, IdentitySeal, event_text
from scrub.ledger.specs import OPEN

PAGE = 100


@dataclass(frozen=True)
class Row:
    id: int
    kind: str
    status: str
    received_at: str
    due_at: str
    overdue: bool
    items: int


def page(session: Session, *, status: str | None = None, kind: str | None = None,
         overdue_only: bool = False, now: dt.datetime | None = None, number: int = 1,
         size: int = PAGE) -> tuple[list[Row], int]:
    """One page of requests (open and overdue first, then by due date) and how many match."""
    now = now or dt.datetime.now(dt.UTC)
    overdue = and_(Request.status.in_(OPEN), Request.due_at < now)
    where = [overdue] if overdue_only else []
    if status:
        where.append(Request.status == status)
    if kind:
        where.append(Request.kind == kind)
    total = session.execute(select(func.count()).select_from(Request).where(*where)).scalar()
    query = (select(Request.id, Request.kind, Request.status, Request.received_at,
                    Request.due_at, case((overdue, 0), else_=1).label("rank"))
             .where(*where).order_by("rank", Request.due_at, Request.id)
             .offset((max(number, 1) - 1) * size).limit(size))
    rows = session.execute(query).all()
    counts = dict(session.execute(
        select(Item.request_id, func.count()).where(Item.request_id.in_([r.id for r in rows]))
        .group_by(Item.request_id)).all()) if rows else {}
    return [Row(r.id, r.kind, r.status, utc(r.received_at).isoformat(),
                utc(r.due_at).isoformat(), r.rank == 0, int(counts.get(r.id, 0)))
            for r in rows], int(total or 0)


def account_events(session: Session, limit: int = 200) -> list[dict[str, object]]:
    """The latest staff account events (sign-ins, failures, locks, account changes), newest
    first: what the admin's activity page shows."""
    from scrub.ledger._history import ACCOUNT_ACTIONS

    rows = session.execute(select(Event.seq, Event.at, Event.actor, Event.action, Event.body)
                           .where(Event.request_id.is_(None),
                                  Event.action.in_(sorted(ACCOUNT_ACTIONS)))
                           .order_by(Event.seq.desc()).limit(limit)).all()
    out = []
    for seq, at, actor, action, body in rows:
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        out.append({"seq": seq, "at": utc(at).isoformat(), "actor": actor, "action": action,
                    "user": fields.get("user") or "(no such account)",
                    "detail": ", ".join(f"{k}: {fields[k]}" for k in ("role", "reason", "until")
                                        if k in fields)})
    return out


def same_requester(session: Session, request_id: int) -> list[int]:
    """The other requests whose requester gave the same email (by keyed digest): a reviewer
    sees repeats, which the web intake never joins on its own."""
    mine = select(Request.requester_hash).where(Request.id == request_id).scalar_subquery()
    return list(session.execute(select(Request.id).where(Request.requester_hash == mine,
                                                         Request.id != request_id)
                                .order_by(Request.id).limit(50)).scalars())


def check_request_history(session: Session, seal: IdentitySeal, request_id: int) -> str | None:
    """None when the request's events authenticate, follow their predecessors and derive the
    state its row holds; else what is wrong (naming events, never values)."""
    events = session.execute(select(Event).where(Event.request_id == request_id)
                             .order_by(Event.seq)).scalars().all()
    if not events:
        return "the request has no history"
    before = {seq: digest for seq, digest in session.execute(
        select(Event.seq, Event.hash).where(Event.seq.in_([e.seq - 1 for e in events])))}
    states: dict[int, DerivedRequest] = {}
    for e in events:
        expected_prev = GENESIS if e.seq == 1 else before.get(e.seq - 1)
        if e.prev_hash != expected_prev:
            return f"event {e.seq} does not follow event {e.seq - 1}"
        text = event_text(e.prev_hash, e.seq, e.request_id, utc(e.at).isoformat(), e.actor,
                          e.action, e.body)
        if seal.mac(text) != e.hash:
            return (f"event {e.seq} does not authenticate under the ledger key (altered, or "
                    "written before the ledger was keyed: run `scrub ledger verify`)")
        problem = derive(states, {}, e.seq, request_id, e.action, e.body, True)
        if problem:
            return problem
    return _compare(session, states.get(request_id), request_id)


def _compare(session: Session, state: DerivedRequest | None, request_id: int) -> str | None:
    row = session.get(Request, request_id)
    if state is None or row is None:
        return "the request's history does not create it"
    if row.status != state.status:
        return "its status is not the one its history gives"
    if utc(row.due_at).isoformat() != state.due_at:
        return "its due date is not the one its history gives"
    items = session.execute(select(func.count()).select_from(Item)
                            .where(Item.request_id == request_id)).scalar()
    if items != state.item_count:
        return "its items are not the ones its history names"
    return None
