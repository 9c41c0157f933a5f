"""Shared fixtures: one real Redis and one real etcd per test session (end-to-end tests only), and
one throwaway PostgreSQL, started only when a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Infra, free_port, running_infra
from tests.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with running_infra(tmp_path_factory, "infra") as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres(free_port()) as server:
        yield server
