"""servers, locations, allocations, host commands and beats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 10:41:19.615979
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flavors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flavors")),
        sa.UniqueConstraint("name", name=op.f("uq_flavors_name")),
    )
    op.create_table(
        "host_allocations",
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("disk_gb", sa.BigInteger(), nullable=False),
        sa.Column("servers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_host_allocations")),
    )
    op.create_table(
        "host_beats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("disk_gb", sa.BigInteger(), nullable=False),
        sa.Column("used_vcpus", sa.Integer(), nullable=False),
        sa.Column("used_ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("used_disk_gb", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_host_beats")),
    )
    with op.batch_alter_table("host_beats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_beats_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "host_commands",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("origin", sa.String(length=80), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_host_commands")),
        sa.UniqueConstraint("id", name=op.f("uq_host_commands_id")),
        sa.UniqueConstraint("origin", name="uq_host_commands_origin"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("host_commands", schema=None) as batch_op:
        batch_op.create_index("ix_host_commands_agent", ["agent", "state", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_host_commands_server_id"), ["server_id"], unique=False)

    op.create_table(
        "locations",
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", name=op.f("pk_locations")),
    )
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_locations_project", ["project_id", "kind", "target"], unique=False
        )

    op.create_table(
        "server_allocations",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("server_id", name=op.f("pk_server_allocations")),
    )
    with op.batch_alter_table("server_allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_server_allocations_host"), ["host"], unique=False)

    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=36), nullable=False),
        sa.Column("flavor", sa.String(length=64), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=True),
        sa.Column("group_policy", sa.String(length=16), nullable=True),
        sa.Column("within", sa.JSON(), nullable=False),
        sa.Column("avoid", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task_state", sa.String(length=16), nullable=True),
        sa.Column("fault", sa.String(length=1024), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("placement", sa.String(length=16), nullable=False),
        sa.Column("tried", sa.JSON(), nullable=False),
        sa.Column("trying", sa.String(length=80), nullable=True),
        sa.Column("delegated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.create_index("ix_servers_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_servers_group", ["project_id", "group_name"], unique=False)
        batch_op.create_index(
            "ix_servers_project_created", ["project_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index("ix_servers_project_created")
        batch_op.drop_index("ix_servers_group")
        batch_op.drop_index("ix_servers_created")

    op.drop_table("servers")
    with op.batch_alter_table("server_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_allocations_host"))

    op.drop_table("server_allocations")
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_index("ix_locations_project")

    op.drop_table("locations")
    with op.batch_alter_table("host_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_commands_server_id"))
        batch_op.drop_index("ix_host_commands_agent")

    op.drop_table("host_commands")
    with op.batch_alter_table("host_beats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_beats_seen_at"))

    op.drop_table("host_beats")
    op.drop_table("host_allocations")
    op.drop_table("flavors")
