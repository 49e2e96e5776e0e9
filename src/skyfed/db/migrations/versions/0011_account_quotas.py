"""swift_accounts gain quotas (bytes and objects, over all and per tier)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("swift_accounts") as batch:
        batch.add_column(sa.Column("quotas", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("swift_accounts") as batch:
        batch.drop_column("quotas")
