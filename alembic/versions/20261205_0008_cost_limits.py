"""users' emails unique per organization, not across organizations

An admin creating a user learnt, from a 409, that an email belonged to another organization. Emails
are now unique within an organization only; sign-in checks the password against each user with the
email.

Revision ID: 0008_cost_limits
Revises: 0013_fast_writes
Create Date: 2026-12-05 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_cost_limits"
down_revision: str | None = "0013_fast_writes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_users_email"), "users", type_="unique")
    op.create_unique_constraint(op.f("uq_users_org_id_email"), "users", ["org_id", "email"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_users_org_id_email"), "users", type_="unique")
    op.create_unique_constraint(op.f("uq_users_email"), "users", ["email"])
