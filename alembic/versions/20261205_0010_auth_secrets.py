"""issued tokens and their families, disabled users, idempotency keys

issued_tokens lists every token a login or refresh issued until it expires, with its family (the
login it descends from) and its user: a reused refresh token or a logout revokes the family, and a
deleted or disabled user's tokens are revoked together. users.disabled_at marks a disabled user.

idempotency_keys keep, per user and key, the digest of the first request and the answer it got (for a
day), written in the transaction of the write.

Revision ID: 0010_auth_secrets
Revises: 0007_replies_metrics
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0010_auth_secrets"
down_revision: str | None = "0007_replies_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "issued_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("type IN ('access', 'refresh')", name=op.f("ck_issued_tokens_type")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_issued_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_issued_tokens")),
    )
    op.create_index(op.f("ix_issued_tokens_user_id"), "issued_tokens", ["user_id"], unique=False)
    op.create_index(op.f("ix_issued_tokens_family"), "issued_tokens", ["family"], unique=False)
    op.create_index(op.f("ix_issued_tokens_expires_at"), "issued_tokens", ["expires_at"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_idempotency_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_idempotency_keys_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_org_id"), "idempotency_keys", ["org_id"], unique=False)
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("issued_tokens")
    op.drop_column("users", "disabled_at")
