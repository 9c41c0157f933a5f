from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gochat_py.launcher import MODULE_ORDER
from tests.e2e.harness import Cluster, Infra


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
