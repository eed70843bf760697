"""``scrub ledger verify``: the history is authentic, and the tables say what it says.

1. The chain: each event's hash is the HMAC (ledger key) of its fields and the previous hash, so
   an edited, inserted, deleted, reordered or appended event is named.
2. The state: each request's fields and its set of items are derived from its events and compared
   with the tables; each sealed identity and item must open for its own request.
3. Anchors: the ledger heads recorded in signed release manifests must still be in the chain,
   which is what detects a history cut short. Why each check: docs/design/ledger.md.

Messages name events, requests, items (by row id) and fields, never a value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Row, func, select

from scrub.ledger._history import DerivedRequest, derive
from scrub.ledger.models import ChainHead, Event, Item, Request
from scrub.ledger.sealing import (
    GENESIS,
    IdentitySeal,
    event_text,
    legacy_hash,
    legacy_item_digest,
)
from scrub.progress import Progress

#: Requests whose items every later release must honour.
ENFORCED = frozenset({"verified", "scheduled", "applied", "closed"})
#: Problems kept in a report (the count covers them all).
_KEPT = 50


@dataclass(frozen=True)
class Anchor:
    """The ledger head a signed release manifest recorded: ``events`` and the hash of the
    last of them, when release ``release`` was built."""

    release: str
    events: int
    head: str


@dataclass
class LedgerReport:
    """What ``verify`` found. ``problem`` is the first of ``problems``; ``first_bad_seq`` the
    first event the chain check rejects."""

    events: int
    head: str
    problem: str | None = None
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    requests: int = 0
    anchors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem
        if len(self.problems) < _KEPT:
            self.problems.append(problem)
        self.problem_count += 1


#: The report's former name.
ChainReport = LedgerReport


def utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime: SQLite returns naive ones (they are UTC), PostgreSQL ones in
    the session's time zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def audit(engine: Engine, seal: IdentitySeal, anchors: Sequence[Anchor] = (), *,
          collect: bool = False, batch: int = 20_000, progress: bool = False
          ) -> tuple[LedgerReport, list[tuple[int, str, str, str]]]:
    """Check the chain, the anchors and the tables against the events (see the module text).
    With ``collect``: also (request id, kind, item type, value) of every request whose
    derived state is enforced, from the same pass (empty unless the report is ok). With
    ``progress``: the two passes (history, tables) and the records read, on stderr."""
    report = LedgerReport(0, GENESIS)
    options = {"isolation_level": "REPEATABLE READ"} \
        if engine.dialect.name == "postgresql" else {}
    # one transaction, so the events and the tables are read as of one moment (SQLite: the
    # engine's write transaction holds appends back until the audit ends)
    with engine.connect().execution_options(**options) as connection, connection.begin():
        meter = _meter(connection, progress)
        try:
            try:
                states, snapshot = _walk(connection, seal, anchors, report, batch, meter)
            except (ValueError, TypeError, OverflowError):  # a stored value of the wrong type
                report.add("the events table holds a value that is not of its column's type "
                           "(edited outside scrub)")
                report.first_bad_seq = report.events + 1
                return report, []
            if report.first_bad_seq is not None:
                report.add("request state was not compared with the history: the history "
                           "itself is broken")
                return report, []
            try:
                enforced = _compare(connection, seal, states, snapshot, report, collect, batch,
                                    meter)
            except (ValueError, TypeError, OverflowError):
                report.add("the requests or items table holds a value that is not of its "
                           "column's type (edited outside scrub)")
                return report, []
        finally:
            meter.finish()
    return report, enforced if report.ok else []


def _meter(connection: Connection, enabled: bool) -> Progress:
    """Progress over the audit's two passes; its total (events, requests and items, as the
    head and the tables count them) is only asked of the database when it is shown."""
    total = None
    if enabled:
        try:
            total = sum(int(connection.execute(query).scalar() or 0) for query in (
                select(ChainHead.seq), select(func.count()).select_from(Request),
                select(func.count()).select_from(Item)))
        except (ValueError, TypeError):  # a head edited outside scrub: the audit names it
            total = None
    return Progress("verify ledger", 2, total, enabled=enabled, units=("passes", "records"))


def _walk(connection: Connection, seal: IdentitySeal, anchors: Sequence[Anchor],
          report: LedgerReport, batch: int, meter: Progress
          ) -> tuple[dict[int, DerivedRequest], dict[str, list[str | None]]]:
    """Recompute the chain, check the anchors on the way and derive each request's state."""
    expected_at: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        expected_at.setdefault(anchor.events, []).append(anchor)
    walk = _Walk(seal, report, expected_at)
    columns = (Event.seq, Event.request_id, Event.at, Event.actor, Event.action, Event.body,
               Event.prev_hash, Event.hash)
    rows = connection.execution_options(yield_per=batch).execute(
        select(*columns).order_by(Event.seq))
    last_at, at_iso = None, ""
    for seq, request_id, at, actor, action, body, prev_hash, stored in rows:
        if seq % batch == 0:
            meter.advance(batch, shards=0)
        if at != last_at:  # events of one batch share their time
            last_at, at_iso = at, utc(at).isoformat()
        if not walk.step(seq, request_id, at_iso, actor, action, body, prev_hash, stored):
            return walk.states, walk.snapshot
    meter.advance(walk.count % batch, shards=1)
    head = connection.execute(select(ChainHead.seq, ChainHead.hash)).first()
    walk.finish(None if head is None else (head.seq, head.hash), anchors)
    return walk.states, walk.snapshot


@dataclass
class _Walk:
    """The chain walk so far: the last event's position and hash, and each request's state.

    ``unvouched``: the first unkeyed event no keyed re-key event has vouched for yet.
    ``unkeyed_problem``: the first event, if unkeyed, that does not describe a valid step:
    named once the walk knows whether a re-key event vouches for it (if not, that it is
    unkeyed comes first)."""

    seal: IdentitySeal
    report: LedgerReport
    expected_at: dict[int, list[Anchor]]
    states: dict[int, DerivedRequest] = field(default_factory=dict)
    snapshot: dict[str, list[str | None]] = field(default_factory=dict)
    prev: str = GENESIS
    count: int = 0
    unvouched: int | None = None
    unkeyed_problem: tuple[int, str] | None = None

    def step(self, seq: int, request_id: int | None, at_iso: str, actor: str, action: str,
             body: str, prev_hash: str, stored: str) -> bool:
        """Check one event and apply it; False when the chain breaks there (reported)."""
        broken = self._out_of_place(seq, prev_hash)
        if broken is not None:
            return self._break(*broken)
        text = event_text(self.prev, seq, request_id, at_iso, actor, action, body)
        if self.seal.mac(text) == stored:
            if self.unvouched is not None and action != "rekey":
                return self._break(_unkeyed(self.unvouched), self.unvouched)
            keyed = True
            self.unvouched = None
        elif legacy_hash(text) == stored:
            # Before revision 0004 (or written by an older scrub after a downgrade): only
            # a later re-key event, which the migration writes with the key, vouches for it.
            keyed = False
            if self.unvouched is None:
                self.unvouched = seq
        else:
            return self._break(f"event {seq} was altered (its hash is not this ledger key's "
                               "MAC of its fields)", seq)
        self.prev, self.count = stored, seq
        for anchor in self.expected_at.get(seq, ()):
            if anchor.head != stored:
                self.report.add(f"event {seq} is not the one release {anchor.release} "
                                "recorded (the history was rewritten from there)")
        problem = derive(self.states, self.snapshot, seq, request_id, action, body, keyed)
        if problem and keyed:
            return self._break(problem, seq)
        if problem and self.unkeyed_problem is None:
            self.unkeyed_problem = (seq, problem)
        return True

    def _out_of_place(self, seq: int, prev_hash: str) -> tuple[str, int] | None:
        """(problem, first bad event) when event ``seq`` is not the next one, or does not
        follow the last; None when it is in place."""
        expected = self.count + 1
        if seq != expected:
            what = "missing" if seq > expected else "out of order"
            return f"event {expected} is {what} (next found: {seq})", expected
        if prev_hash != self.prev:
            return (f"event {seq} does not follow event {seq - 1} (deleted, inserted or "
                    "reordered events)", seq)
        return None

    def _break(self, problem: str, seq: int) -> bool:
        self.report.events, self.report.head, self.report.first_bad_seq = \
            self.count, self.prev, seq
        self.report.add(problem)
        return False

    def finish(self, head: tuple[int, str] | None, anchors: Sequence[Anchor]) -> None:
        """Report what only the whole chain shows: anchors past its end, a head (position,
        hash) that is not its last event, an unkeyed event nothing vouched for."""
        report, count = self.report, self.count
        report.events, report.head = count, self.prev
        for anchor in anchors:
            if anchor.events == 0 and anchor.head != GENESIS:
                report.add(f"release {anchor.release} recorded an empty ledger with a head "
                           "that is not the genesis hash")
            elif anchor.events > count:
                report.add(f"release {anchor.release} recorded {anchor.events} event(s); the "
                           f"ledger holds {count} (events were deleted from its end, or it was "
                           "rolled back)")
            report.anchors.append(anchor.release)
        if head != (count, self.prev):
            report.add("the chain head does not match the last event (events after it were "
                       "deleted)")
            report.first_bad_seq = count + 1
        if self.unvouched is not None:
            report.add(_unkeyed(self.unvouched))
            report.first_bad_seq = self.unvouched
        elif self.unkeyed_problem is not None:
            report.add(self.unkeyed_problem[1])
            report.first_bad_seq = self.unkeyed_problem[0]


def _unkeyed(seq: int) -> str:
    return (f"event {seq} is not keyed and no re-key event vouches for it (forged, or written "
            "by a scrub older than revision 0004 and not migrated since)")


@dataclass
class _Reads:
    """Records read by :func:`_compare`, shown on the meter a batch at a time."""

    meter: Progress
    batch: int
    count: int = 0

    def tick(self) -> None:
        self.count += 1
        if self.count % self.batch == 0:
            self.meter.advance(self.batch, shards=0)


def _compare(connection: Connection, seal: IdentitySeal, states: dict[int, DerivedRequest],
             snapshot: dict[str, list[str | None]], report: LedgerReport, collect: bool,
             batch: int, meter: Progress) -> list[tuple[int, str, str, str]]:
    """Compare the requests and items tables with the derived states."""
    reads = _Reads(meter, batch)
    seen: set[int] = set()
    columns = (Request.id, Request.kind, Request.status, Request.received_at, Request.due_at,
               Request.extension_reason, Request.identity, Request.key_id,
               Request.requester_hash, Request.notes, Request.duplicate_of, Request.releases)
    for row in connection.execution_options(yield_per=batch).execute(
            select(*columns).order_by(Request.id)):
        reads.tick()
        state = states.get(row.id)
        if state is None:
            report.add(f"request {row.id} is not in the history (added outside scrub)")
            continue
        seen.add(row.id)
        _compare_request(seal, row, state, snapshot, report)
    report.requests = len(seen)
    for request_id in sorted(set(states) - seen):
        report.add(f"request {request_id} is in the history but missing from the table")
    sums, enforced = _compare_items(connection, seal, states, report, collect, reads)
    meter.advance(reads.count % batch, shards=1)
    for request_id in sorted(seen):
        state = states[request_id]
        if sums.get(request_id, [0, 0]) != [state.item_sum, state.item_count] \
                or state.legacy_items:
            report.add(f"request {request_id}: its items differ from its history (added, "
                       "removed or replaced outside scrub)")
    return enforced


def _compare_items(connection: Connection, seal: IdentitySeal, states: dict[int, DerivedRequest],
                   report: LedgerReport, collect: bool, reads: _Reads
                   ) -> tuple[dict[int, list[int]], list[tuple[int, str, str, str]]]:
    """Open and check every item; returns the sum and count of the keyed item digests per
    request (legacy items are ticked off their state instead) and, with ``collect``, the
    items of requests whose derived state is enforced."""
    sums: dict[int, list[int]] = {}
    enforced: list[tuple[int, str, str, str]] = []
    for request_id, item_id, type_name, digest, sealed in connection.execution_options(
            yield_per=reads.batch).execute(select(Item.request_id, Item.id, Item.type,
                                                  Item.digest, Item.sealed)
                                           .order_by(Item.request_id, Item.id)):
        reads.tick()
        value = seal.open_item(sealed, request_id, type_name)
        if value is None:
            report.add(f"request {request_id}: item {item_id} does not open for it (altered, "
                       "or moved from another request)")
            continue
        if seal.item_digest(type_name, value) != digest:
            report.add(f"request {request_id}: item {item_id} does not match its digest")
            continue
        state = states.get(request_id)
        if state is None:
            continue  # named above
        legacy = legacy_item_digest(type_name, value) if state.legacy_items else None
        if legacy is not None and legacy in state.legacy_items:
            state.legacy_items.discard(legacy)
        else:
            total = sums.setdefault(request_id, [0, 0])
            total[0] += int(digest, 16)
            total[1] += 1
        if collect and state.status in ENFORCED:
            enforced.append((request_id, state.kind, type_name, value))
    return sums, enforced


def _compare_request(seal: IdentitySeal, row: Row, state: DerivedRequest,
                     snapshot: dict[str, list[str | None]], report: LedgerReport) -> None:
    """Name in ``report`` the fields of one request's row that its history does not give."""
    differ = _plain_differences(row, state)
    requester, notes = state.requester, state.notes
    if state.legacy:
        recorded = snapshot.get(str(row.id))
        if recorded is None:
            report.add(f"request {row.id} predates the re-key event, which recorded nothing "
                       "for it")
            return
        requester, notes = recorded
    if row.requester_hash != requester:
        differ.append("requester")
    if seal.notes_digest(row.notes) != notes:
        differ.append("notes")
    if row.key_id != seal.key_id:
        differ.append("key_id")
    else:
        identity = seal.try_open(row.identity, row.id)
        if identity is None:
            report.add(f"request {row.id}: its sealed identity does not open for it (altered, "
                       "or moved from another request)")
        elif not isinstance(identity.get("email"), str) \
                or seal.lookup(identity["email"]) != row.requester_hash:
            differ.append("identity")
    if differ:
        report.add(f"request {row.id}: {', '.join(differ)} differ{'s' if len(differ) == 1 else ''}"
                   " from its history")


def _plain_differences(row: Row, state: DerivedRequest) -> list[str]:
    """The fields of a request's row compared as they are (no key needed) that differ from
    its derived state."""
    differ = []
    if row.kind != state.kind:
        differ.append("kind")
    if row.status != state.status:
        differ.append("status")
    if utc(row.received_at).isoformat() != state.received_at:
        differ.append("received_at")
    if utc(row.due_at).isoformat() != state.due_at:
        differ.append("due_at")
    if row.extension_reason != state.extension_reason:
        differ.append("extension_reason")
    try:
        releases = json.loads(row.releases) if row.releases is not None else []
    except ValueError:
        releases = None
    if releases != state.releases:
        differ.append("releases")
    if row.duplicate_of is not None:
        differ.append("duplicate_of")
    return differ
