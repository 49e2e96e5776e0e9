"""child zones reached over a message bus: the broker URL (encrypted) and the queue

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("child_zones") as batch:
        batch.add_column(sa.Column("bus_url_secret", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("bus_endpoint", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("bus_queue", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("child_zones") as batch:
        batch.drop_column("bus_queue")
        batch.drop_column("bus_endpoint")
        batch.drop_column("bus_url_secret")
