"""Alembic environment: migrations run on a connection handed over by skyfed.db.migrate."""

from alembic import context

from skyfed.db.metadata import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through skyfed.db.migrate (it passes a connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
