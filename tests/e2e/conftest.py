from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gochat_py.launcher import MODULE_ORDER
from tests.e2e.harness import Cluster, Infra
from tests.postgres import PostgresServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def cluster(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """The whole system as separate processes, shared by the tests of one module.

    A test module may set ``CLUSTER_ENV`` (extra GOCHAT_* settings) and ``CLUSTER_MODULES``.
    """
    failed_before = request.session.testsfailed
    env = getattr(request.module, "CLUSTER_ENV", {})
    modules = getattr(request.module, "CLUSTER_MODULES", MODULE_ORDER)
    running = Cluster(infra, tmp_path_factory.mktemp("cluster"), **env).start(modules)
    yield running
    running.stop()
    if request.session.testsfailed > failed_before:
        print(f"\ncluster log: {running.log_path}\n{running.tails()}", file=sys.stderr)


@pytest.fixture(scope="module")
def pg_cluster(
    infra: Infra, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """The module's cluster again, its users and kept messages in a PostgreSQL database of its own
    (migrated with ``gochat-py db upgrade`` first, as an operator does); started only when a test
    asks for it through ``db_cluster``."""
    failed_before = request.session.testsfailed
    env = {**getattr(request.module, "CLUSTER_ENV", {}), "GOCHAT_LOGIC__DATABASE_URL": postgres.new_database()}
    modules = getattr(request.module, "CLUSTER_MODULES", MODULE_ORDER)
    running = Cluster(infra, tmp_path_factory.mktemp("pg_cluster"), **env)
    running.upgrade_database()
    running.start(modules)
    yield running
    running.stop()
    if request.session.testsfailed > failed_before:
        print(f"\ncluster log: {running.log_path}\n{running.tails()}", file=sys.stderr)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_cluster(request: pytest.FixtureRequest) -> Cluster:
    """For the few tests of users and kept messages that run on both databases: the module's
    cluster (SQLite), then its PostgreSQL twin."""
    return request.getfixturevalue("cluster" if request.param == "sqlite" else "pg_cluster")
