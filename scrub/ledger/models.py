"""SQLAlchemy models of the ledger. Schema changes go through Alembic (``migrations/``).

Names of constraints and indexes follow one convention (``metadata.naming_convention``) so that
migrations can refer to them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from scrub.ledger.vocabulary import ITEM_TYPES, KINDS, STAFF_ROLES, STATUSES

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        CheckConstraint(_one_of("kind", KINDS), name="kind"),
        CheckConstraint(_one_of("status", STATUSES), name="status"),
        Index(None, "status", "due_at"),
        {"comment": "Takedown and erasure requests; identities only encrypted"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), comment="gdpr_erasure, copyright, safety, other")
    status: Mapped[str] = mapped_column(String(20), comment="lifecycle state")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                comment="received + 30 days, up to + 90")
    extension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    identity: Mapped[bytes] = mapped_column(
        LargeBinary, comment="AES-GCM sealed requester name and email, bound to the request id")
    key_id: Mapped[str] = mapped_column(String(16), comment="fingerprint of the sealing key")
    requester_hash: Mapped[str] = mapped_column(
        String(64), index=True, comment="keyed hash of the email: finds repeat requesters")
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("requests.id"), nullable=True, comment="the first request with these items")
    releases: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="release ids the request was applied in (JSON list)")

    items: Mapped[list[Item]] = relationship(back_populates="request", order_by="Item.id")


class Item(Base):
    __tablename__ = "request_items"
    __table_args__ = (
        CheckConstraint(_one_of("type", ITEM_TYPES), name="type"),
        UniqueConstraint("request_id", "digest"),
        {"comment": "What a request asks to remove: sealed canonical values, keyed digests"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    type: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(
        String(64), comment="keyed digest of type and canonical value (lookups, uniqueness)")
    sealed: Mapped[bytes] = mapped_column(
        LargeBinary, comment="AES-GCM sealed canonical value, bound to the request id and type")
    request: Mapped[Request] = relationship(back_populates="items")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("seq"),
        {"comment": "Append-only history; each event carries the hash of the previous one"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, comment="position in the chain, from 1")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True,
                                                   nullable=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text, comment="canonical JSON: before/after, no identity")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    """One row: the last event's sequence number and hash, and the fingerprint of the key
    that authenticates the chain. Writers lock it to append."""

    __tablename__ = "chain_head"
    __table_args__ = ({"comment": "Serialises appends to the event chain"},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(
        String(16), nullable=True, comment="fingerprint of the key the chain's MACs use")


class StaffUser(Base):
    """A console account (``scrub users add``). ``mac``: the ledger key's MAC of the id, name,
    role and password hash, so a row edited outside scrub does not sign in."""

    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint(_one_of("role", STAFF_ROLES), name="role"),
        UniqueConstraint("name"),
        {"comment": "Staff accounts of the web console; Argon2id password hashes"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), comment="reviewer or admin")
    password_hash: Mapped[str] = mapped_column(Text, comment="Argon2id (PHC string)")
    mac: Mapped[str] = mapped_column(String(64), comment="ledger key's MAC of id, name, role, "
                                     "password hash")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    failed_logins: Mapped[int] = mapped_column(Integer, comment="wrong passwords in a row")
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)


class StaffSession(Base):
    """A signed-in browser: the cookie holds a random token, the table only its keyed
    digest (a reader of the database cannot take over a session)."""

    __tablename__ = "staff_sessions"
    __table_args__ = (
        UniqueConstraint("token_digest"),
        {"comment": "Console sessions: keyed digests of their tokens"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class IntakeReceipt(Base):
    """A request filed through the web form: the keyed digest of the reference code the
    requester was shown, the request it joined, and their sealed statement."""

    __tablename__ = "intake_receipts"
    __table_args__ = (
        UniqueConstraint("code_digest"),
        {"comment": "Web intake receipts: reference code digests, sealed statements"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    requester_hash: Mapped[str] = mapped_column(String(64),
                                                comment="keyed hash of the email given")
    statement: Mapped[bytes] = mapped_column(LargeBinary, comment="AES-GCM sealed statement")
    consent: Mapped[str] = mapped_column(String(40), comment="version of the consent text")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
