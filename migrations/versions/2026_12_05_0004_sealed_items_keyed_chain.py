"""Seal request items, bind sealed values to their request, and key the event chain.

- ``request_items.value`` (canonical text in clear) gives way to ``sealed`` (AES-GCM, bound to
  the request id and item type) and ``digest`` (keyed HMAC: lookups and uniqueness).
- Identities are sealed again, bound to their request id (they were bound to nothing).
- ``chain_head.key_id`` names the key whose HMAC authenticates the chain.
- A ledger that holds events gets one ``rekey`` event, HMAC-keyed, whose previous hash is the
  head of the unkeyed sha256 chain so far: it vouches for that history (checked first; a broken
  one is refused) and records each existing request's requester digest and notes digest, which
  the earlier events do not carry.

Rows need the ledger key: ``scrub db upgrade --key-file FILE``; an empty ledger needs none.
The downgrade opens the items again and seals identities unbound (key needed when there are
rows); keyed events stay, and an older scrub reports the first of them as altered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ITEMS_COMMENT_OLD = "What a request asks to remove, in canonical form"
ITEMS_COMMENT = "What a request asks to remove: sealed canonical values, keyed digests"
IDENTITY_COMMENT_OLD = "AES-GCM sealed requester name and email (nonce + ciphertext)"
IDENTITY_COMMENT = "AES-GCM sealed requester name and email, bound to the request id"
DIGEST_COMMENT = "keyed digest of type and canonical value (lookups, uniqueness)"
SEALED_COMMENT = "AES-GCM sealed canonical value, bound to the request id and type"
KEY_ID_COMMENT = "fingerprint of the key the chain's MACs use"
ACTOR = "scrub db upgrade"
#: The events table as this revision reads and writes it (typed, so times come back as times).
EVENTS = sa.table("events", sa.column("seq", sa.Integer()), sa.column("request_id", sa.Integer()),
                  sa.column("at", sa.DateTime(timezone=True)), sa.column("actor", sa.String()),
                  sa.column("action", sa.String()), sa.column("body", sa.Text()),
                  sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()))


def _seal_for(bind: sa.engine.Connection, what: str):  # type: ignore[no-untyped-def]
    """The ledger key's seal when the ledger holds rows (None when empty); the key comes from
    ``scrub db upgrade --key-file`` (``config.attributes["ledger_key"]``)."""
    from scrub.errors import UserInputError
    from scrub.ledger.sealing import IdentitySeal

    rows = sum(bind.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0
               for table in ("requests", "request_items", "events"))
    if not rows:
        return None
    key = context.config.attributes.get("ledger_key")
    if key is None:
        raise UserInputError(f"revision 0004 {what} the ledger's items and identities: it "
                             "needs the ledger key", hint="run `scrub db upgrade --key-file "
                             "FILE` (the key the identities were sealed with)")
    return IdentitySeal(key)


def _check_chain(bind: sa.engine.Connection, seal) -> tuple[int, str]:  # type: ignore
    """The chain's (events, head), once every event checks: an unkeyed sha256 one as before
    0004, or one keyed already (a ledger that was at 0004, downgraded and upgraded again).
    A broken chain is refused: the re-key event would vouch for it."""
    from scrub.errors import ExternalSourceError
    from scrub.ledger.audit import utc
    from scrub.ledger.sealing import GENESIS, event_text, legacy_hash

    prev, count = GENESIS, 0
    c = EVENTS.c
    for seq, request_id, at, actor, action, body, prev_hash, stored in bind.execute(
            sa.select(c.seq, c.request_id, c.at, c.actor, c.action, c.body, c.prev_hash, c.hash)
            .order_by(c.seq)):
        text = event_text(prev, seq, request_id, utc(at).isoformat(), actor, action, body)
        if seq != count + 1 or prev_hash != prev or stored not in (legacy_hash(text),
                                                                   seal.mac(text)):
            raise ExternalSourceError(
                f"the ledger's history is broken at event {count + 1}: revision 0004 would "
                "vouch for it with the key, so it refuses", hint="restore the database from a "
                "backup whose `scrub ledger verify` passes, then upgrade")
        prev, count = stored, seq
    head = bind.execute(sa.text("SELECT seq, hash FROM chain_head WHERE id = 1")).one()
    if (head.seq, head.hash) != (count, prev):
        raise ExternalSourceError("the ledger's chain head does not match its last event: "
                                  "revision 0004 refuses to vouch for it",
                                  hint="restore the database from a backup")
    return count, prev


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("request_items") as batch:
        batch.add_column(sa.Column("digest", sa.String(length=64), nullable=True,
                                   comment=DIGEST_COMMENT))
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True,
                                   comment=SEALED_COMMENT))
    op.add_column("chain_head", sa.Column("key_id", sa.String(length=16), nullable=True,
                                          comment=KEY_ID_COMMENT))
    seal = _seal_for(bind, "seals")
    if seal is not None:
        _seal_rows(bind, seal)
    with op.batch_alter_table("request_items") as batch:
        batch.drop_constraint(op.f("uq_request_items_request_id_type_value"), type_="unique")
        batch.drop_column("value")
        batch.alter_column("digest", existing_type=sa.String(length=64), nullable=False,
                           existing_comment=DIGEST_COMMENT)
        batch.alter_column("sealed", existing_type=sa.LargeBinary(), nullable=False,
                           existing_comment=SEALED_COMMENT)
        batch.create_unique_constraint(op.f("uq_request_items_request_id_digest"),
                                       ["request_id", "digest"])
    if not sqlite:  # SQLite keeps no comments
        op.create_table_comment("request_items", ITEMS_COMMENT,
                                existing_comment=ITEMS_COMMENT_OLD)
        op.alter_column("requests", "identity", existing_type=sa.LargeBinary(),
                        existing_nullable=False, comment=IDENTITY_COMMENT,
                        existing_comment=IDENTITY_COMMENT_OLD)


def _seal_rows(bind: sa.engine.Connection, seal) -> None:  # type: ignore[no-untyped-def]
    from scrub.crypto import KeyFileError
    from scrub.ledger.sealing import event_text

    events, head = _check_chain(bind, seal)
    items = [{"i": i, "d": seal.item_digest(t, v), "s": seal.seal_item(r, t, v)}
             for i, r, t, v in bind.execute(sa.text(
                 "SELECT id, request_id, type, value FROM request_items"))]
    if items:
        bind.execute(sa.text("UPDATE request_items SET digest = :d, sealed = :s WHERE id = :i"),
                     items)
    identities, snapshot = [], {}
    for request_id, identity, key_id, requester, notes in bind.execute(sa.text(
            "SELECT id, identity, key_id, requester_hash, notes FROM requests ORDER BY id")):
        opened = seal.open_legacy(bytes(identity)) if key_id == seal.key_id else None
        if opened is None:
            raise KeyFileError(f"the identity of request {request_id} does not open with this "
                               f"key ({seal.key_id}; it was sealed with {key_id})",
                               hint="pass the key the ledger was written with")
        identities.append({"i": request_id,
                           "s": seal.seal(opened["name"], opened["email"], request_id)})
        snapshot[str(request_id)] = [requester, seal.notes_digest(notes)]
    if identities:
        bind.execute(sa.text("UPDATE requests SET identity = :s WHERE id = :i"), identities)
    body = json.dumps({"from": {"events": events, "head": head}, "requests": snapshot,
                       "reason": "revision 0004: items sealed, history keyed"},
                      sort_keys=True, separators=(",", ":"))
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    seq = events + 1
    digest = seal.mac(event_text(head, seq, None, at.isoformat(), ACTOR, "rekey", body))
    bind.execute(EVENTS.insert().values(seq=seq, request_id=None, at=at, actor=ACTOR,
                                              action="rekey", body=body, prev_hash=head,
                                              hash=digest))
    bind.execute(sa.text("UPDATE chain_head SET seq = :s, hash = :h, key_id = :k WHERE id = 1"),
                 {"s": seq, "h": digest, "k": seal.key_id})


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("request_items") as batch:
        batch.add_column(sa.Column("value", sa.Text(), nullable=True,
                                   comment="canonical value (a URL, a hash, a term)"))
    seal = _seal_for(bind, "opens")
    if seal is not None:
        _open_rows(bind, seal)
    with op.batch_alter_table("request_items") as batch:
        batch.drop_constraint(op.f("uq_request_items_request_id_digest"), type_="unique")
        batch.drop_column("sealed")
        batch.drop_column("digest")
        batch.alter_column("value", existing_type=sa.Text(), nullable=False,
                           existing_comment="canonical value (a URL, a hash, a term)")
        batch.create_unique_constraint(op.f("uq_request_items_request_id_type_value"),
                                       ["request_id", "type", "value"])
    op.drop_column("chain_head", "key_id")
    if not sqlite:
        # 0004 gives request ids itself (each identity is sealed to its id first); before it
        # they came from the column's sequence, which must start after them again
        op.execute("SELECT setval(pg_get_serial_sequence('requests', 'id'), "
                   "coalesce(max(id), 0) + 1, false) FROM requests")
        op.create_table_comment("request_items", ITEMS_COMMENT_OLD,
                                existing_comment=ITEMS_COMMENT)
        op.alter_column("requests", "identity", existing_type=sa.LargeBinary(),
                        existing_nullable=False, comment=IDENTITY_COMMENT_OLD,
                        existing_comment=IDENTITY_COMMENT)


def _open_rows(bind: sa.engine.Connection, seal) -> None:  # type: ignore[no-untyped-def]
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from scrub.crypto import KeyFileError
    from scrub.ledger.sealing import LEGACY_IDENTITY_AD

    values = []
    for item_id, request_id, type_name, sealed in bind.execute(sa.text(
            "SELECT id, request_id, type, sealed FROM request_items")):
        value = seal.open_item(bytes(sealed), request_id, type_name)
        if value is None:
            raise KeyFileError(f"item {item_id} of request {request_id} does not open with "
                               "this key", hint="pass the ledger's key")
        values.append({"i": item_id, "v": value})
    if values:
        bind.execute(sa.text("UPDATE request_items SET value = :v WHERE id = :i"), values)
    key = context.config.attributes["ledger_key"]
    identities = []
    for request_id, identity, key_id in bind.execute(sa.text(
            "SELECT id, identity, key_id FROM requests")):
        opened = seal.try_open(bytes(identity), request_id) if key_id == seal.key_id else None
        if opened is None:
            raise KeyFileError(f"the identity of request {request_id} does not open with this "
                               "key", hint="pass the ledger's key")
        nonce = os.urandom(12)
        plain = json.dumps(opened, sort_keys=True).encode()
        identities.append({"i": request_id,
                           "s": nonce + AESGCM(key).encrypt(nonce, plain, LEGACY_IDENTITY_AD)})
    if identities:
        bind.execute(sa.text("UPDATE requests SET identity = :s WHERE id = :i"), identities)
