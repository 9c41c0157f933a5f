"""Component tests: one piece of gochat-py in this process (or one command), against a real Redis
(the session's ``infra`` fixture), no cluster.  ``tests/e2e`` is for the whole system as processes,
``tests/unit`` for code that needs nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "component: one piece against a real Redis, or one command; no cluster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/component/" in str(item.fspath):
            item.add_marker(pytest.mark.component)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind gochat-py supports: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gochat.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()
