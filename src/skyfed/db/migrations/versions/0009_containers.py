"""containers: each Swift container of a project and the cluster it was placed on

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "containers",
        sa.Column("project_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("cluster_id", sa.String(36), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("containers")
