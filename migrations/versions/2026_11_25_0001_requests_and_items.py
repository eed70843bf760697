"""Requests and their items.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

KINDS = "'gdpr_erasure', 'copyright', 'safety', 'other'"
STATUSES = "'received', 'verified', 'rejected', 'scheduled', 'applied', 'closed', 'withdrawn'"
ITEM_TYPES = ("'url', 'url_prefix', 'host', 'domain', 'md5', 'sha1', 'sha256', 'pdq', 'phash', "
              "'sample_key', 'caption_term'")


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False,
                  comment="gdpr_erasure, copyright, safety, other"),
        sa.Column("status", sa.String(length=20), nullable=False, comment="lifecycle state"),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False,
                  comment="received + 30 days, up to + 90"),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("identity", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM sealed requester name and email (nonce + ciphertext)"),
        sa.Column("key_id", sa.String(length=16), nullable=False,
                  comment="fingerprint of the sealing key"),
        sa.Column("requester_hash", sa.String(length=64), nullable=False,
                  comment="keyed hash of the email: finds repeat requesters"),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True,
                  comment="the first request with these items"),
        sa.Column("releases", sa.Text(), nullable=True,
                  comment="release ids the request was applied in (JSON list)"),
        sa.CheckConstraint(f"kind IN ({KINDS})", name=op.f("ck_requests_kind")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_requests_status")),
        sa.ForeignKeyConstraint(["duplicate_of"], ["requests.id"],
                                name=op.f("fk_requests_duplicate_of_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
        comment="Takedown and erasure requests; identities only encrypted",
    )
    op.create_index(op.f("ix_requests_requester_hash"), "requests", ["requester_hash"])
    op.create_index(op.f("ix_requests_status_due_at"), "requests", ["status", "due_at"])
    op.create_table(
        "request_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Text(), nullable=False,
                  comment="canonical value (a URL, a hash, a term)"),
        sa.CheckConstraint(f"type IN ({ITEM_TYPES})", name=op.f("ck_request_items_type")),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"],
                                name=op.f("fk_request_items_request_id_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_items")),
        sa.UniqueConstraint("request_id", "type", "value",
                            name=op.f("uq_request_items_request_id_type_value")),
        comment="What a request asks to remove, in canonical form",
    )
    op.create_index(op.f("ix_request_items_request_id"), "request_items", ["request_id"])
    op.create_index(op.f("ix_request_items_type_value"), "request_items", ["type", "value"])


def downgrade() -> None:
    op.drop_index(op.f("ix_request_items_type_value"), table_name="request_items")
    op.drop_index(op.f("ix_request_items_request_id"), table_name="request_items")
    op.drop_table("request_items")
    op.drop_index(op.f("ix_requests_status_due_at"), table_name="requests")
    op.drop_index(op.f("ix_requests_requester_hash"), table_name="requests")
    op.drop_table("requests")
