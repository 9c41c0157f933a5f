"""Alembic's entry point: runs the migrations on the connection gochat_py.storage.schema hands over.

No alembic.ini and no URL here: the caller owns the connection (and its transaction and lock), so
``gochat-py db upgrade`` and the modules' start-up check share one code path.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
