"""Staff accounts, console sessions and web intake receipts (``scrub serve``, ``scrub users``).

- ``staff_users``: name, role (reviewer or admin), Argon2id password hash, the ledger key's MAC
  of those, and the failed-sign-in counter and lock that throttle guessing.
- ``staff_sessions``: keyed digests of the session tokens the console's cookies carry.
- ``intake_receipts``: the keyed digest of the reference code a requester was shown, the
  request it joined, their sealed statement and the consent text's version.

New tables only: no key is needed, and the downgrade drops them (with their rows).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False, comment="reviewer or admin"),
        sa.Column("password_hash", sa.Text(), nullable=False, comment="Argon2id (PHC string)"),
        sa.Column("mac", sa.String(length=64), nullable=False,
                  comment="ledger key's MAC of id, name, role, password hash"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False,
                  comment="wrong passwords in a row"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('reviewer', 'admin')", name=op.f("ck_staff_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("name", name=op.f("uq_staff_users_name")),
        comment="Staff accounts of the web console; Argon2id password hashes",
    )
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"],
                                name=op.f("fk_staff_sessions_user_id_staff_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_staff_sessions_token_digest")),
        comment="Console sessions: keyed digests of their tokens",
    )
    op.create_index(op.f("ix_staff_sessions_user_id"), "staff_sessions", ["user_id"])
    op.create_table(
        "intake_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("requester_hash", sa.String(length=64), nullable=False,
                  comment="keyed hash of the email given"),
        sa.Column("statement", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM sealed statement"),
        sa.Column("consent", sa.String(length=40), nullable=False,
                  comment="version of the consent text"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_intake_receipts_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_receipts")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_intake_receipts_code_digest")),
        comment="Web intake receipts: reference code digests, sealed statements",
    )
    op.create_index(op.f("ix_intake_receipts_request_id"), "intake_receipts", ["request_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_intake_receipts_request_id"), table_name="intake_receipts")
    op.drop_table("intake_receipts")
    op.drop_index(op.f("ix_staff_sessions_user_id"), table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
