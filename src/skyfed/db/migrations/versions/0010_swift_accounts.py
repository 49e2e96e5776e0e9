"""swift_accounts (account metadata and ACL); containers gain ACLs, attributes and
a child zone as their place

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "swift_accounts",
        sa.Column("project_id", sa.String(36), primary_key=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("acl", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("containers") as batch:
        batch.alter_column("cluster_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("child_id", sa.String(36), nullable=True))
        batch.create_index("ix_containers_child_id", ["child_id"])
        batch.add_column(sa.Column("read_acl", sa.String(4096), nullable=False, server_default=""))
        batch.add_column(sa.Column("write_acl", sa.String(4096), nullable=False, server_default=""))
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(
            sa.Column("foreign_refs", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.drop_column("foreign_refs")
        batch.drop_column("attributes")
        batch.drop_column("write_acl")
        batch.drop_column("read_acl")
        batch.drop_index("ix_containers_child_id")
        batch.drop_column("child_id")
        batch.alter_column("cluster_id", existing_type=sa.String(36), nullable=False)
    op.drop_table("swift_accounts")
