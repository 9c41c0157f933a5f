"""Alembic migrations of gochat-py's database, run by ``gochat-py db upgrade`` (gochat_py.storage.schema)."""
