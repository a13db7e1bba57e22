"""Alembic environment: migrations run on the connection the collector hands over."""

from alembic import context
from sqlalchemy import Connection, create_engine

from collector.ledger.schema import metadata

connection = context.config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=metadata,
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # plain `alembic` command line with sqlalchemy.url set to a sync URL
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
