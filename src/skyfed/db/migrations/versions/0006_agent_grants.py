"""agent grants: which hosts each agent account may carry; indexes for carriers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_grants",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("max_hosts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_agent_grants_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_agent_grants")),
        sa.UniqueConstraint("user_id", name=op.f("uq_agent_grants_user_id")),
    )
    with op.batch_alter_table("host_beats") as batch:
        batch.create_index(batch.f("ix_host_beats_agent"), ["agent"], unique=False)
    with op.batch_alter_table("host_commands") as batch:
        batch.create_index("ix_host_commands_host", ["host", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("host_commands") as batch:
        batch.drop_index("ix_host_commands_host")
    with op.batch_alter_table("host_beats") as batch:
        batch.drop_index(batch.f("ix_host_beats_agent"))
    op.drop_table("agent_grants")
