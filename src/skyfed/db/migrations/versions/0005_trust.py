"""trust: link keys of bus accounts, shared token revocations, failed-login counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("link_key_secret", sa.LargeBinary(), nullable=True))
    op.create_table(
        "revocations",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_revocations")),
    )
    op.create_index(op.f("ix_revocations_revoked_at"), "revocations", ["revoked_at"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    op.create_index(
        op.f("ix_login_failures_blocked_until"), "login_failures", ["blocked_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failures_blocked_until"), table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index(op.f("ix_revocations_revoked_at"), table_name="revocations")
    op.drop_table("revocations")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("link_key_secret")
