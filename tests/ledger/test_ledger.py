"""The ledger on SQLite and PostgreSQL: lifecycle, deadlines, duplicates, identities sealed,
and a tamper-evident, append-only history."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from scrub.crypto import KeyFileError
from scrub.errors import UserInputError
from scrub.ledger import db
from scrub.ledger.models import Event
from scrub.ledger.service import (
    AppendOnlyError,
    IdentitySeal,
    Ledger,
    LedgerError,
    RequestSpec,
    TransitionError,
)

RECEIVED = "2026-11-01T10:00:00Z"


def spec(email: str = "jane@example.org", items: list[dict] | None = None,
         received: str = RECEIVED, kind: str = "gdpr_erasure") -> RequestSpec:
    return RequestSpec.parse({
        "kind": kind, "received_at": received,
        "requester": {"name": "Jane Doe", "email": email},
        "items": items or [{"type": "url", "value": "HTTPS://Example.com/a/../photo.jpg"},
                           {"type": "caption_term", "value": "Jane Doe"},
                           {"type": "md5", "value": "9E107D9D372BB6826BD81D3542A419D6"}],
    }, where="request")


def test_a_request_moves_through_its_lifecycle(ledger: Ledger) -> None:
    request_id, created = ledger.add(spec(), "alice")
    assert created
    view = ledger.show(request_id, items=True)
    assert view.status == "received"
    assert {"type": "url", "value": "https://example.com/photo.jpg"} in view.items
    assert {"type": "md5", "value": "9e107d9d372bb6826bd81d3542a419d6"} in view.items
    ledger.transition(request_id, "verify", "alice")
    ledger.transition(request_id, "apply", "release-bot", release="r-2026-12")
    ledger.transition(request_id, "close", "bob")
    view = ledger.show(request_id)
    assert view.status == "closed" and view.releases == ["r-2026-12"]
    assert [e["action"] for e in view.history] == ["created", "verify", "apply", "close"]


@pytest.mark.parametrize(("path", "refused"), [
    ([], "close"), ([], "apply"), (["reject"], "verify"), (["verify"], "reject"),
    (["withdraw"], "verify"), (["verify", "apply", "close"], "withdraw"),
])
def test_refused_transitions_name_the_state(ledger: Ledger, path: list[str],
                                            refused: str) -> None:
    request_id, _ = ledger.add(spec(), "alice")
    for action in path:
        ledger.transition(request_id, action, "alice")
    before = ledger.verify_chain().events
    with pytest.raises(TransitionError, match=f"request {request_id} is"):
        ledger.transition(request_id, refused, "alice")
    assert ledger.verify_chain().events == before  # nothing recorded


def test_deadlines_extensions_and_the_overdue_list(ledger: Ledger) -> None:
    late, _ = ledger.add(spec("a@example.org"), "alice")
    fresh, _ = ledger.add(spec("b@example.org", received="2026-11-20T09:00:00Z"), "alice")
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    assert ledger.show(late).due_at.startswith("2026-12-01")
    assert [v.id for v in ledger.list(overdue=True, now=now)] == [late]
    ledger.extend(late, "alice", reason="identity check pending", days=30)
    assert ledger.list(overdue=True, now=now) == []
    with pytest.raises(LedgerError, match="90 days"):
        ledger.extend(late, "alice", reason="more", days=31)
    with pytest.raises(LedgerError, match="reason"):
        ledger.extend(fresh, "alice", reason=" ")
    ledger.transition(late, "verify", "alice")
    assert [v.id for v in ledger.list(status="verified")] == [late]


def test_a_repeat_request_joins_the_first(ledger: Ledger) -> None:
    first, _ = ledger.add(spec(), "alice")
    again, created = ledger.add(spec(email=" JANE@example.org", items=[
        {"type": "url", "value": "https://example.com/photo.jpg"},
        {"type": "url", "value": "https://example.com/other.jpg"}]), "bob")
    assert (again, created) == (first, False)
    assert len(ledger.list()) == 1
    assert len(ledger.show(first).items) == 4
    other, created = ledger.add(spec(email="someone@example.org"), "bob")
    assert created and other != first


def test_a_batch_joins_repeats_in_order_within_it_and_with_the_ledger(ledger: Ledger) -> None:
    def item(n: int) -> dict:
        return {"type": "md5", "value": f"{n:032x}"}

    stored, _ = ledger.add(spec(email="ann@example.org", items=[item(1)]), "alice")
    withdrawn, _ = ledger.add(spec(email="bo@example.org", items=[item(5)]), "alice")
    ledger.transition(withdrawn, "withdraw", "alice")
    results = ledger.add_many([
        spec(email="cy@example.org", items=[item(2)]),              # new (A)
        spec(email="cy@example.org", items=[item(3), item(2)]),     # joins A, brings 3
        spec(email="cy@example.org", items=[item(3), item(4)]),     # 3 is A's now: joins A
        spec(email="ANN@example.org", items=[item(6), item(1)]),    # joins the stored request
        spec(email="bo@example.org", items=[item(5)]),              # withdrawn one: new
        spec(email="dee@example.org", items=[item(2)]),             # same item, other person
    ], "bob")
    a = results[0][0]
    assert results[0][1] and results[4][1] and results[5][1]
    assert results[1:4] == [(a, False), (a, False), (stored, False)]
    assert len({a, results[4][0], results[5][0], stored, withdrawn}) == 5
    assert sorted(i["value"][-1] for i in ledger.show(a, items=True).items) == ["2", "3", "4"]
    assert sorted(i["value"][-1] for i in ledger.show(stored, items=True).items) == ["1", "6"]
    history = ledger.show(a).history
    assert [e["action"] for e in history] == ["created"] + ["duplicate_received"] * 2
    assert ledger.verify_chain().ok and ledger.verify_chain().events == 9


@pytest.mark.parametrize(("record", "message"), [
    ({"received_at": RECEIVED}, "missing field 'kind'"),
    ({"kind": "gdpr_erasure"}, "missing field 'received_at'"),
    ({"kind": "nope", "received_at": RECEIVED}, "field 'kind' must be one of"),
    ({"kind": "gdpr_erasure", "received_at": "yesterday"}, "received_at' is not an ISO 8601"),
    ({"kind": "gdpr_erasure", "received_at": RECEIVED, "requester": {"name": "J"}},
     "requester: missing field 'email'"),
    ({"kind": "gdpr_erasure", "received_at": RECEIVED,
      "requester": {"name": "J", "email": "j@x.org"}, "items": [{"type": "url", "value": "x"}]},
     r"items\[0\]: not a valid url item"),
    ({"kind": "gdpr_erasure", "received_at": RECEIVED,
      "requester": {"name": "J", "email": "j@x.org"}, "items": [{"type": "face", "value": "x"}]},
     r"items\[0\]: unknown item type"),
])
def test_malformed_requests_name_the_field(record: dict, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as raised:
        RequestSpec.parse(record, where="request.json")
    assert "request.json" in str(raised.value)


def test_identities_are_sealed_and_need_the_key(ledger: Ledger, engine: Engine) -> None:
    request_id, _ = ledger.add(spec(email="very.private@example.org"), "alice")
    assert ledger.show(request_id, identity=True).requester == {
        "name": "Jane Doe", "email": "very.private@example.org"}
    with pytest.raises(KeyFileError, match="key"):
        Ledger(engine).add(spec(email="other@example.org"), "alice")
    other = Ledger(engine, seal=IdentitySeal(b"\x01" * 32))
    with pytest.raises(KeyFileError, match="sealed with key"):
        other.show(request_id, identity=True)
    assert len(ledger.list()) == 1  # the refused add wrote nothing
    assert ledger.verify_chain().events == 1


def test_the_requester_is_nowhere_in_the_sqlite_file(tmp_path, key) -> None:  # type: ignore
    engine = db.make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    db.upgrade(engine)
    ledger = Ledger(engine, seal=IdentitySeal(key))
    ledger.add(RequestSpec.parse({
        "kind": "copyright", "received_at": RECEIVED,
        "requester": {"name": "Zebulon Quartermain", "email": "zq@studio.example"},
        "items": [{"type": "domain", "value": "zq-studio.com"}]}, where="r"), "alice")
    engine.dispose()
    raw = (tmp_path / "l.db").read_bytes()
    for secret in (b"Zebulon", b"Quartermain", b"zq@studio"):
        assert secret not in raw


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "insert", "truncate"])
def test_tampering_with_the_history_is_detected(ledger: Ledger, engine: Engine,
                                                tamper: str) -> None:
    for email in ("a@x.org", "b@x.org", "c@x.org"):
        request_id, _ = ledger.add(spec(email), "alice")
        ledger.transition(request_id, "verify", "alice")
    assert ledger.verify_chain().ok and ledger.verify_chain().events == 6
    with engine.begin() as connection:  # someone with database access, not through scrub
        if tamper == "edit":
            connection.execute(text("UPDATE events SET actor = 'mallory' WHERE seq = 3"))
        elif tamper == "delete":
            connection.execute(text("DELETE FROM events WHERE seq = 3"))
        elif tamper == "reorder":
            connection.execute(text("UPDATE events SET seq = -1 WHERE seq = 3"))
            connection.execute(text("UPDATE events SET seq = 3 WHERE seq = 4"))
            connection.execute(text("UPDATE events SET seq = 4 WHERE seq = -1"))
        elif tamper == "insert":
            connection.execute(text("UPDATE events SET seq = seq + 100 WHERE seq >= 3"))
            connection.execute(text("UPDATE events SET seq = seq - 99 WHERE seq >= 103"))
            row = connection.execute(text("SELECT request_id, at, prev_hash, hash FROM events "
                                          "WHERE seq = 2")).one()
            connection.execute(text(
                "INSERT INTO events (seq, request_id, at, actor, action, body, prev_hash, hash)"
                " VALUES (3, :r, :at, 'mallory', 'verify', '{}', :p, :h)"),
                {"r": row.request_id, "at": row.at, "p": row.hash, "h": "f" * 64})
        else:
            connection.execute(text("DELETE FROM events WHERE seq = 6"))
    report = ledger.verify_chain()
    assert not report.ok
    assert report.first_bad_seq == {"edit": 3, "delete": 3, "reorder": 3, "insert": 3,
                                    "truncate": 6}[tamper]


def test_events_cannot_be_changed_through_the_code(ledger: Ledger, engine: Engine) -> None:
    ledger.add(spec(), "alice")
    with Session(engine) as session:
        recorded = session.scalars(select(Event)).first()
        recorded.actor = "mallory"
        with pytest.raises(AppendOnlyError):
            session.flush()
        session.rollback()
        with pytest.raises(AppendOnlyError):
            session.execute(update(Event).values(actor="mallory"))
        recorded = session.scalars(select(Event)).first()
        session.delete(recorded)
        with pytest.raises(AppendOnlyError):
            session.flush()
    assert ledger.verify_chain().ok


@pytest.mark.slow
def test_parallel_writers_never_fork_the_chain(ledger: Ledger, engine: Engine,
                                               key: bytes) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        mine = Ledger(engine, seal=IdentitySeal(key))
        try:
            for i in range(8):
                request_id, _ = mine.add(spec(f"w{n}-{i}@x.org"), f"worker-{n}")
                mine.transition(request_id, "verify", f"worker-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    report = ledger.verify_chain()
    assert report.ok and report.events == 4 * 8 * 2


def test_a_database_behind_the_migrations_is_refused(database: tuple[str, dict]) -> None:
    url, options = database
    engine = db.make_engine(url, **options)
    with pytest.raises(db.DatabaseError, match="has no ledger yet") as raised:
        Ledger(engine)
    assert "scrub db upgrade" in (raised.value.hint or "")
    db.upgrade(engine, "0001")
    with pytest.raises(db.DatabaseError, match="revision 0001"):
        Ledger(engine)
    db.upgrade(engine)
    Ledger(engine)
    engine.dispose()


def test_migrations_go_down_and_up_and_match_the_models(database: tuple[str, dict]) -> None:
    url, options = database
    engine = db.make_engine(url, **options)
    db.upgrade(engine)
    db.check(engine)  # no drift between models and migrations
    db.downgrade(engine, "base")
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision() == db.HEAD_REVISION
    db.downgrade(engine, "0001")
    assert db.current_revision(engine) == "0001"
    with pytest.raises(db.DatabaseError, match="is at revision 0001"):
        db.require_current(engine)
    db.upgrade(engine)
    db.require_current(engine)
    engine.dispose()


def test_revision_0004_goes_down_and_up_with_rows_and_the_key(ledger: Ledger, engine: Engine,
                                                              key: bytes) -> None:
    first, _ = ledger.add(spec("a@example.org"), "alice")
    ledger.transition(first, "verify", "alice")
    with pytest.raises(UserInputError, match="needs the ledger key"):
        db.downgrade(engine, "0003")  # rows cannot be opened without it
    assert db.current_revision(engine) == db.HEAD_REVISION  # nothing moved: one transaction
    db.downgrade(engine, "0003", key=key)
    with engine.connect() as connection:
        values = connection.execute(text("SELECT value FROM request_items ORDER BY id")).scalars()
        assert "jane doe" in list(values)
    with engine.begin() as connection:  # what scrub 0003 writes: ids from the sequence
        connection.execute(text(
            "INSERT INTO requests (kind, status, received_at, due_at, identity, key_id, "
            "requester_hash) SELECT kind, status, received_at, due_at, identity, key_id, "
            "requester_hash FROM requests WHERE id = :i"), {"i": first})
        connection.execute(text("DELETE FROM requests WHERE id > :i"), {"i": first})
    db.upgrade(engine, key=key)
    db.check(engine)
    report = ledger.verify()
    assert report.ok and report.events == 3  # created, verify, and the re-key event
    assert ledger.show(first, items=True, identity=True).requester == {
        "name": "Jane Doe", "email": "a@example.org"}
