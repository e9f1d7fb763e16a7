"""Alembic environment. The app calls `recommender.store.migrate(path)`; by hand:
`alembic -c migrations/alembic.ini -x db=lookalike.db upgrade head`."""

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    db = context.get_x_argument(as_dictionary=True).get("db", "lookalike.db")
    with create_engine(f"sqlite:///{db}", poolclass=pool.NullPool).connect() as conn:
        run(conn)
