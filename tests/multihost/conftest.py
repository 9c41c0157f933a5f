"""Fixtures of the multi-host tests: a private network of namespaces and a deployment on it.

Every test here is marked ``multihost`` (skip them with ``-m "not multihost"``).  They need root
(network namespaces) and ``ip`` from iproute2; run.sh installs iproute2.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests.multihost.cluster import MultiHostCluster
from tests.multihost.netns import Network


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/multihost/" in str(item.fspath):
            item.add_marker(pytest.mark.multihost)


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    if os.geteuid() != 0:
        pytest.skip("multi-host tests create network namespaces: they need root")
    assert shutil.which("ip"), "ip (iproute2) is missing: ./run.sh install installs it"
    net = Network().create()
    try:
        yield net
    finally:
        net.destroy()


@pytest.fixture(scope="module")
def cluster(
    network: Network, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[MultiHostCluster]:
    """The deployment of cluster.LAYOUT, shared by the tests of one module."""
    failed_before = request.session.testsfailed
    running = MultiHostCluster(tmp_path_factory.mktemp("multihost"), network)
    try:
        running.start()
    except BaseException:
        print(f"\ncluster log: {running.log_path}\n{running.tails()}", file=sys.stderr)
        running.stop()
        raise
    yield running
    running.stop()
    if request.session.testsfailed > failed_before:
        print(f"\ncluster log: {running.log_path}\n{running.tails()}", file=sys.stderr)
