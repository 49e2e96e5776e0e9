"""containers may be moving; container_moves keep each move's state and progress

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("containers") as batch:
        batch.add_column(sa.Column("moving_to", sa.String(36), nullable=True))
    with op.batch_alter_table("storage_clusters") as batch:
        batch.add_column(
            sa.Column("move_bandwidth", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "container_moves",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("container", sa.String(256), nullable=False),
        sa.Column("source_id", sa.String(36), nullable=False),
        sa.Column("target_id", sa.String(36), nullable=False),
        sa.Column("tier_from", sa.String(32), nullable=False),
        sa.Column("tier_to", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("marker", sa.String(1024), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("objects_copied", sa.BigInteger(), nullable=False),
        sa.Column("bytes_copied", sa.BigInteger(), nullable=False),
        sa.Column("objects_skipped", sa.BigInteger(), nullable=False),
        sa.Column("objects_cleaned", sa.BigInteger(), nullable=False),
        sa.Column("foreign_refs", sa.Boolean(), nullable=False),
        sa.Column("objects_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_container_moves_project_id", "container_moves", ["project_id"])
    op.create_index("ix_container_moves_state", "container_moves", ["state"])


def downgrade() -> None:
    op.drop_table("container_moves")
    with op.batch_alter_table("storage_clusters") as batch:
        batch.drop_column("draining")
        batch.drop_column("move_bandwidth")
    with op.batch_alter_table("containers") as batch:
        batch.drop_column("moving_to")
