"""Item 12: ``scrub ledger verify`` names every edit of the ledger made without the key, on
SQLite and PostgreSQL: request state re-derived from the events (status, kind, dates,
extension, releases, notes, requester, items), identities and items bound to their request,
the chain authenticated by an HMAC under the ledger key (rewrites, insertions, reorders,
forged extensions, replays, a history re-hashed as a pre-0004 one), and truncation or
rollback seen against the head a signed release manifest recorded. Releases and ``apply``
refuse a ledger that fails, instead of silently skipping what an edit hid. A pre-0004 ledger
is sealed and re-keyed by ``scrub db upgrade --key-file``."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from scrub.crypto import write_key_file, write_signing_keypair
from scrub.ledger import db
from scrub.ledger.models import Event
from scrub.ledger.service import IdentitySeal, Ledger
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_exit, expect_ok
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    drop_foreign_keys,
    engine,
    key,
    ledger,
    raw_sqlite,
    request_policies,
    spec,
    tamper,
    text_of_database,
)

GENESIS = "0" * 64


def populate(ledger: Ledger) -> dict[str, int]:
    """Three requests: a (three items, notes, verified, applied in r1), b (verified), c
    (extended)."""
    a, _ = ledger.add(spec("a@example.org", notes="called twice"), "alice")
    b, _ = ledger.add(spec("b@example.org", [{"type": "md5", "value": "0" * 32}]), "alice")
    c, _ = ledger.add(spec("c@example.org", [{"type": "domain", "value": "example.net"}]),
                      "alice")
    ledger.transition_many([a, b], "verify", "alice")
    ledger.transition(a, "apply", "builder", release="r1")
    ledger.extend(c, "alice", reason="identity check", days=20)
    return {"a": a, "b": b, "c": c}


def verify(tmp_path: Path, database: tuple[str, dict], *extra: str):  # type: ignore
    return cli(tmp_path, database, "ledger", "verify", *extra)


def assert_named(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    expect_exit(result, 1)
    assert fragment in result.output, result.output
    for secret in ("Jane Doe", "jane doe", "example.com/a/photo.jpg", "@example.org",
                   "called twice"):
        assert secret not in result.output


TABLE_EDITS = {
    "status": (["UPDATE requests SET status = 'withdrawn' WHERE id = :a"],
               "request {a}: status differs"),
    "kind": (["UPDATE requests SET kind = 'other' WHERE id = :a"], "request {a}: kind differs"),
    "received_at": (["UPDATE requests SET received_at = due_at WHERE id = :b"],
                    "request {b}: received_at differs"),
    "due_at": (["UPDATE requests SET due_at = received_at WHERE id = :c"],
               "request {c}: due_at differs"),
    "extension": (["UPDATE requests SET extension_reason = NULL WHERE id = :c"],
                  "request {c}: extension_reason differs"),
    "releases": (["UPDATE requests SET releases = NULL WHERE id = :a"],
                 "request {a}: releases differs"),
    "notes": (["UPDATE requests SET notes = 'nothing' WHERE id = :a"],
              "request {a}: notes differs"),
    "requester": (["UPDATE requests SET requester_hash = "
                   "(SELECT requester_hash FROM requests WHERE id = :b) WHERE id = :a"],
                  "request {a}: requester, identity differ from its history"),
    "identity_copied": (["UPDATE requests SET identity = "
                         "(SELECT identity FROM requests WHERE id = :b) WHERE id = :a"],
                        "request {a}: its sealed identity does not open for it"),
    "item_deleted": (["DELETE FROM request_items WHERE id = "
                      "(SELECT min(id) FROM request_items WHERE request_id = :a)"],
                     "request {a}: its items differ from its history"),
    "item_moved": (["UPDATE request_items SET request_id = :b WHERE id = "
                    "(SELECT min(id) FROM request_items WHERE request_id = :a)"],
                   "request {b}: item"),
    "item_copied": (["INSERT INTO request_items (request_id, type, digest, sealed) "
                     "SELECT :a, type, digest, sealed FROM request_items WHERE request_id = :b"],
                    "does not open for it"),
    "item_digest": (["UPDATE request_items SET digest = (SELECT digest FROM request_items "
                     "WHERE request_id = :b) WHERE request_id = :a AND type = 'md5'"],
                    "does not match its digest"),
    "request_inserted": (["INSERT INTO requests (id, kind, status, received_at, due_at, "
                          "identity, key_id, requester_hash) SELECT 99, kind, 'verified', "
                          "received_at, due_at, identity, key_id, requester_hash FROM requests "
                          "WHERE id = :b"], "request 99 is not in the history"),
}


@pytest.mark.parametrize("case", sorted(TABLE_EDITS))
def test_every_edit_of_the_tables_is_named(tmp_path: Path, database: tuple[str, dict],
                                           ledger: Ledger, engine: Engine, case: str) -> None:
    ids = populate(ledger)
    assert verify(tmp_path, database).exit_code == 0
    statements, fragment = TABLE_EDITS[case]
    tamper(engine, *statements, **{k: v for k, v in ids.items()
                                   if any(f":{k}" in s for s in statements)})
    assert_named(verify(tmp_path, database), fragment.format(**ids))


def test_identities_swapped_between_requests_do_not_open(tmp_path: Path,
                                                        database: tuple[str, dict],
                                                        ledger: Ledger, engine: Engine) -> None:
    ids = populate(ledger)
    with engine.begin() as connection:
        rows = dict(connection.execute(text("SELECT id, identity FROM requests WHERE id IN "
                                            "(:a, :b)"), ids).all())
        for target, source in ((ids["a"], ids["b"]), (ids["b"], ids["a"])):
            connection.execute(text("UPDATE requests SET identity = :s WHERE id = :i"),
                               {"s": bytes(rows[source]), "i": target})
    result = verify(tmp_path, database)
    for request_id in (ids["a"], ids["b"]):
        assert_named(result, f"request {request_id}: its sealed identity does not open for it")


def test_a_request_deleted_from_the_table_is_named(tmp_path: Path, database: tuple[str, dict],
                                                   ledger: Ledger, engine: Engine) -> None:
    ids = populate(ledger)
    statements = ["DELETE FROM request_items WHERE request_id = {c}",
                  "DELETE FROM requests WHERE id = {c}"]
    if engine.dialect.name == "sqlite":
        with raw_sqlite(engine) as connection:  # foreign keys off, as in sqlite3's shell
            for statement in statements:
                connection.execute(statement.format(**ids))
    else:
        drop_foreign_keys(engine)
        tamper(engine, *(s.format(**ids) for s in statements))
    assert_named(verify(tmp_path, database),
                 f"request {ids['c']} is in the history but missing from the table")


# --------------------------------------------------------------------------- the chain


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None \
        else value.astimezone(dt.UTC)


def _text(prev: str, seq: int, request_id, at: dt.datetime, actor: str, action: str,  # type: ignore
          body: str) -> bytes:
    return json.dumps([prev, seq, request_id, _utc(at).isoformat(), actor, action, body],
                      separators=(",", ":"), ensure_ascii=False).encode()


def sha256_chain(text_: bytes) -> str:
    """The unkeyed chain hash scrub used before revision 0004."""
    return hashlib.sha256(text_).hexdigest()


def attacker_hmac(text_: bytes) -> str:
    return hmac.new(b"\x07" * 32, text_, hashlib.sha256).hexdigest()


def events(engine: Engine) -> list:  # type: ignore[type-arg]
    with engine.connect() as connection:
        return connection.execute(select(Event.seq, Event.request_id, Event.at, Event.actor,
                                         Event.action, Event.body, Event.prev_hash, Event.hash)
                                  .order_by(Event.seq)).all()


def rehash(engine: Engine, first: int, digest, changes: dict | None = None) -> None:  # type: ignore
    """Rewrite events from ``first`` on with ``digest`` (changes: seq -> column values), every
    later hash and the head recomputed, as someone without the ledger key can."""
    rows = events(engine)
    prev = GENESIS if first == 1 else rows[first - 2].hash
    with engine.begin() as connection:
        for row in rows[first - 1:]:
            values = {"request_id": row.request_id, "actor": row.actor, "action": row.action,
                      "body": row.body, **(changes or {}).get(row.seq, {})}
            new = digest(_text(prev, row.seq, values["request_id"], row.at, values["actor"],
                               values["action"], values["body"]))
            connection.execute(text("UPDATE events SET request_id = :r, actor = :a, action = "
                                    ":c, body = :b, prev_hash = :p, hash = :h WHERE seq = :s"),
                               {"r": values["request_id"], "a": values["actor"],
                                "c": values["action"], "b": values["body"], "p": prev,
                                "h": new, "s": row.seq})
            prev = new
        connection.execute(text("UPDATE chain_head SET hash = :h"), {"h": prev})


def append_forged(engine: Engine, digest, request_id: int, action: str,  # type: ignore
                  body: dict) -> int:
    rows = events(engine)
    last = rows[-1]
    seq, at = last.seq + 1, _utc(last.at)
    text_ = json.dumps(body, sort_keys=True, separators=(",", ":"))
    new = digest(_text(last.hash, seq, request_id, at, "mallory", action, text_))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO events (seq, request_id, at, actor, action, body, "
                                "prev_hash, hash) VALUES (:s, :r, :at, 'mallory', :c, :b, :p, "
                                ":h)"), {"s": seq, "r": request_id, "at": at, "c": action,
                                          "b": text_, "p": last.hash, "h": new})
        connection.execute(text("UPDATE chain_head SET seq = :s, hash = :h"),
                           {"s": seq, "h": new})
    return seq


def test_rewritten_histories_are_named_even_with_every_hash_recomputed(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, engine: Engine) -> None:
    ids = populate(ledger)
    verify_event = next(r.seq for r in events(engine) if r.action == "verify")
    # the status edit hidden by a rewritten event, every later hash recomputed unkeyed
    tamper(engine, "UPDATE requests SET status = 'withdrawn' WHERE id = :a", a=ids["a"])
    body = json.dumps({"before": {"status": "received"}, "after": {"status": "withdrawn"}},
                      sort_keys=True, separators=(",", ":"))
    rehash(engine, verify_event, sha256_chain, {verify_event: {"action": "withdraw",
                                                               "body": body}})
    assert_named(verify(tmp_path, database), f"event {verify_event} is not keyed")
    # the same with an HMAC under a key of the attacker's own
    rehash(engine, verify_event, attacker_hmac)
    assert_named(verify(tmp_path, database), f"event {verify_event} was altered")


def test_the_whole_history_rehashed_as_an_unkeyed_one_is_named(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, engine: Engine) -> None:
    populate(ledger)
    rehash(engine, 1, sha256_chain)
    assert_named(verify(tmp_path, database), "event 1 is not keyed")


def test_a_forged_extension_of_the_chain_is_named(tmp_path: Path, database: tuple[str, dict],
                                                  ledger: Ledger, engine: Engine) -> None:
    ids = populate(ledger)
    head = events(engine)[-1]
    tamper(engine, "UPDATE requests SET status = 'withdrawn' WHERE id = :b", b=ids["b"])
    forged = {"before": {"status": "verified"}, "after": {"status": "withdrawn"}}
    seq = append_forged(engine, sha256_chain, ids["b"], "withdraw", forged)
    assert_named(verify(tmp_path, database), f"event {seq} is not keyed")
    tamper(engine, "DELETE FROM events WHERE seq = :s",
           "UPDATE chain_head SET seq = :h, hash = :x", s=seq, h=head.seq, x=head.hash)
    seq = append_forged(engine, attacker_hmac, ids["b"], "withdraw", forged)
    assert_named(verify(tmp_path, database), f"event {seq} was altered")


def test_events_replayed_onto_another_request_are_named(tmp_path: Path,
                                                        database: tuple[str, dict],
                                                        ledger: Ledger, engine: Engine) -> None:
    ids = populate(ledger)
    apply_event = next(r for r in events(engine) if r.action == "apply")
    # a's release recorded for c: the event moved to c (hashes kept) ...
    tamper(engine, "UPDATE events SET request_id = :c WHERE seq = :s", c=ids["c"],
           s=apply_event.seq)
    assert_named(verify(tmp_path, database), f"event {apply_event.seq} was altered")
    tamper(engine, "UPDATE events SET request_id = :a WHERE seq = :s", a=ids["a"],
           s=apply_event.seq)
    assert verify(tmp_path, database).exit_code == 0
    # ... or copied to the end of the chain for b, as a new event
    seq = append_forged(engine, sha256_chain, ids["b"], "apply", json.loads(apply_event.body))
    assert_named(verify(tmp_path, database), f"event {seq} is not keyed")


@pytest.mark.parametrize("case", ["delete", "insert", "reorder"])
def test_deleted_inserted_and_reordered_events_are_named_even_once_rehashed(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, engine: Engine,
        case: str) -> None:
    populate(ledger)
    if case == "delete":
        tamper(engine, "DELETE FROM events WHERE seq = 3",
               "UPDATE events SET seq = seq - 1 WHERE seq > 3",
               "UPDATE chain_head SET seq = seq - 1")
        expected = "event 3 does not follow event 2"
    elif case == "reorder":
        tamper(engine, "UPDATE events SET seq = -1 WHERE seq = 3",
               "UPDATE events SET seq = 3 WHERE seq = 4",
               "UPDATE events SET seq = 4 WHERE seq = -1")
        expected = "event 3 does not follow event 2"
    else:
        tamper(engine, "UPDATE events SET seq = seq + 100 WHERE seq >= 3",
               "UPDATE events SET seq = seq - 99 WHERE seq >= 103",
               "UPDATE chain_head SET seq = seq + 1")
        row = events(engine)[1]
        text_ = "{}"
        tamper(engine, "INSERT INTO events (seq, request_id, at, actor, action, body, prev_hash,"
               " hash) VALUES (3, :r, :at, 'mallory', 'verify', :b, :p, :h)", r=row.request_id,
               at=row.at, b=text_, p=row.hash,
               h=sha256_chain(_text(row.hash, 3, row.request_id, row.at, "mallory", "verify",
                                    text_)))
        expected = "event 4 does not follow event 3"
    assert_named(verify(tmp_path, database), expected)
    rehash(engine, 3, sha256_chain)  # every hash from there on recomputed, as before 0004
    assert_named(verify(tmp_path, database), "event 3 is not keyed")


def test_another_key_is_refused_not_taken_for_tampering(tmp_path: Path,
                                                       database: tuple[str, dict],
                                                       ledger: Ledger) -> None:
    populate(ledger)
    other = tmp_path / "other.key"
    write_key_file(other)
    result = cli(tmp_path, database, "ledger", "verify", env={"SCRUB_KEY_FILE": str(other)})
    assert result.exit_code == 2 and "keyed with key" in result.output
    assert cli(tmp_path, database, "ledger", "verify", key=False).exit_code == 2


# --------------------------------------------------------------------------- anchors


@pytest.mark.slow
def test_truncation_and_rollback_are_seen_against_a_signed_release(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, engine: Engine) -> None:
    data = generate_dataset(tmp_path / "data", rows=300, shards=2, seed=3, embeddings=False)
    url = read_column(data, "URL")[7]
    first, _ = ledger.add(spec("a@example.org", [{"type": "url", "value": url}]), "alice")
    ledger.transition(first, "verify", "alice")
    second, _ = ledger.add(spec("b@example.org", [{"type": "md5", "value": "1" * 32}]), "bob")
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    built = cli(tmp_path, database, "release", "build", str(data), str(tmp_path / "out"),
                *request_policies(tmp_path, "requests"), "--signing-key",
                str(tmp_path / "sign.pem"),
                "--workers", "1", "--quiet", "--json")
    expect_ok(built)
    manifest = json.loads((tmp_path / "out" / "requests.scrub" / "manifest.json").read_text())
    assert manifest["ledger"]["events"] == 3
    anchored = ("--release", str(tmp_path / "out"), "--pubkey", str(tmp_path / "sign.pub"))
    fine = verify(tmp_path, database, *anchored)
    assert fine.exit_code == 0 and "1 signed release manifest" in fine.output
    # truncation: the tail cut and the tables put back as they were before it
    rows = events(engine)
    drop_foreign_keys(engine)
    statements = ["DELETE FROM events WHERE seq >= 3",
                  f"DELETE FROM request_items WHERE request_id = {second}",
                  f"DELETE FROM requests WHERE id = {second}",
                  f"UPDATE requests SET status = 'verified', releases = NULL WHERE id = {first}",
                  f"UPDATE chain_head SET seq = 2, hash = '{rows[1].hash}'"]
    if engine.dialect.name == "sqlite":
        with raw_sqlite(engine) as connection:
            for statement in statements:
                connection.execute(statement)
    else:
        tamper(engine, *statements)
    unanchored = verify(tmp_path, database)
    assert unanchored.exit_code == 0 and "no release given" in unanchored.output  # the limit
    assert_named(verify(tmp_path, database, *anchored),
                 "recorded 3 event(s); the ledger holds 2")
    # rollback: the cut history goes on (through scrub, with the key) past the recorded head
    ledger.add(spec("c@example.org", [{"type": "md5", "value": "2" * 32}]), "carol")
    assert verify(tmp_path, database).exit_code == 0
    assert_named(verify(tmp_path, database, *anchored), "event 3 is not the one release")
    # the anchor itself cannot be edited: the manifest is signed
    copy = tmp_path / "copy"  # the variant's companion folder, which holds its manifest
    shutil.copytree(tmp_path / "out" / "requests.scrub", copy)
    body = json.loads((copy / "manifest.json").read_text())
    body["ledger"]["events"] = 2
    (copy / "manifest.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    forged = verify(tmp_path, database, "--release", str(copy), "--pubkey",
                    str(tmp_path / "sign.pub"))
    assert forged.exit_code == 3 and "signature does not verify" in forged.output
    assert verify(tmp_path, database, "--release", str(tmp_path / "out")).exit_code == 2


def test_apply_refuses_a_ledger_whose_state_was_edited(tmp_path: Path,
                                                      database: tuple[str, dict],
                                                      ledger: Ledger, engine: Engine) -> None:
    data = generate_dataset(tmp_path / "data", rows=300, shards=2, seed=3, embeddings=False)
    url = read_column(data, "URL")[11]
    request, _ = ledger.add(spec("a@example.org", [{"type": "url", "value": url}]), "alice")
    ledger.transition(request, "verify", "alice")
    # hidden from every later release by a status edit: a silent miss unless refused
    tamper(engine, "UPDATE requests SET status = 'withdrawn' WHERE id = :r", r=request)
    result = cli(tmp_path, database, "apply", str(data), str(tmp_path / "out"), "--ledger",
                 "--workers", "1", "--quiet")
    expect_exit(result, 3)
    assert f"request {request}: status differs from its history" in result.output
    assert not list((tmp_path / "out").glob("*.parquet"))


# --------------------------------------------------------------------------- migration


def legacy_ledger(engine: Engine, key: bytes) -> None:
    """A ledger as scrub wrote it before revision 0004 (schema 0003): items in clear,
    identities sealed unbound, events hashed with plain sha256 and recording unkeyed item
    digests. Two requests; the first verified."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    db.upgrade(engine, "0003")
    lookup = hmac.new(key, b"scrub-ledger-requester-lookup", hashlib.sha256).digest()
    at = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    prev, seq = GENESIS, 0
    with engine.begin() as connection:
        for request_id, email, items in (
                (1, "old@example.org", [("url", "https://example.com/legacy.jpg"),
                                        ("caption_term", "zebulon quartermain")]),
                (2, "two@example.org", [("md5", "3" * 32)])):
            nonce = os.urandom(12)
            identity = nonce + AESGCM(key).encrypt(nonce, json.dumps(
                {"email": email, "name": "Old Requester"}, sort_keys=True).encode(),
                b"scrub-ledger-identity")
            connection.execute(text(
                "INSERT INTO requests (id, kind, status, received_at, due_at, identity, key_id, "
                "requester_hash, notes) VALUES (:i, 'gdpr_erasure', 'received', :r, :d, :s, :k, "
                ":h, :n)"), {"i": request_id, "r": at, "d": at + dt.timedelta(days=30),
                            "s": identity, "k": IdentitySeal(key).key_id,
                            "h": hmac.new(lookup, email.encode(), hashlib.sha256).hexdigest(),
                            "n": "legacy note" if request_id == 1 else None})
            for type_name, value in items:
                connection.execute(text("INSERT INTO request_items (request_id, type, value) "
                                        "VALUES (:r, :t, :v)"),
                                   {"r": request_id, "t": type_name, "v": value})
            bodies = [("created", {"after": {"kind": "gdpr_erasure", "status": "received",
                                             "received_at": at.isoformat(),
                                             "due_at": (at + dt.timedelta(days=30)).isoformat()},
                                   "items": sorted(hashlib.sha256(f"{t}\x00{v}".encode())
                                                   .hexdigest() for t, v in items)})]
            if request_id == 1:
                bodies.append(("verify", {"before": {"status": "received"},
                                          "after": {"status": "verified"}}))
                connection.execute(text("UPDATE requests SET status = 'verified' WHERE id = 1"))
            for action, body in bodies:
                seq += 1
                body_text = json.dumps(body, sort_keys=True, separators=(",", ":"))
                digest = sha256_chain(_text(prev, seq, request_id, at, "alice", action,
                                            body_text))
                connection.execute(text(
                    "INSERT INTO events (seq, request_id, at, actor, action, body, prev_hash, "
                    "hash) VALUES (:s, :r, :at, 'alice', :c, :b, :p, :h)"),
                    {"s": seq, "r": request_id, "at": at, "c": action, "b": body_text,
                     "p": prev, "h": digest})
                prev = digest
        connection.execute(text("UPDATE chain_head SET seq = :s, hash = :h"),
                           {"s": seq, "h": prev})


@pytest.fixture()
def old_engine(database: tuple[str, dict]):  # type: ignore[no-untyped-def]
    url, options = database
    engine = db.make_engine(url, **options)
    yield engine
    engine.dispose()


@pytest.mark.slow
def test_a_pre_0004_ledger_is_sealed_and_rekeyed_by_the_upgrade(
        tmp_path: Path, database: tuple[str, dict], old_engine: Engine, key: bytes) -> None:
    legacy_ledger(old_engine, key)
    refused = cli(tmp_path, database, "db", "upgrade", key=False)
    assert refused.exit_code == 2 and "--key-file" in refused.output
    assert db.current_revision(old_engine) == "0003"  # nothing half done
    upgraded = cli(tmp_path, database, "db", "upgrade")
    expect_ok(upgraded)
    checked = verify(tmp_path, database)
    assert checked.exit_code == 0 and "4 event(s)" in checked.output, checked.output
    stored = text_of_database(old_engine)
    assert "zebulon" not in stored and "legacy.jpg" not in stored
    shown = cli(tmp_path, database, "requests", "show", "1", "--items")
    assert "zebulon quartermain" in shown.output and "legacy.jpg" in shown.output
    # the legacy part is vouched for by the keyed re-key event: still tamper-evident
    tamper(old_engine, "UPDATE requests SET notes = 'edited' WHERE id = 1")
    assert_named(verify(tmp_path, database), "request 1: notes differs")
    tamper(old_engine, "UPDATE requests SET notes = 'legacy note' WHERE id = 1",
           "UPDATE events SET actor = 'mallory' WHERE seq = 2")
    assert_named(verify(tmp_path, database), "event 2 was altered")


def test_a_broken_pre_0004_history_is_not_vouched_for(tmp_path: Path,
                                                      database: tuple[str, dict],
                                                      old_engine: Engine, key: bytes) -> None:
    legacy_ledger(old_engine, key)
    tamper(old_engine, "UPDATE events SET actor = 'mallory' WHERE seq = 1")
    refused = cli(tmp_path, database, "db", "upgrade")
    assert refused.exit_code == 3 and "broken at event 1" in refused.output
    assert db.current_revision(old_engine) == "0003"
