"""Shared fixtures: one real Redis and one real etcd per test session (end-to-end tests only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Infra


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    root = tmp_path_factory.mktemp("infra")
    running = Infra(root, root / "infra.log").start()
    yield running
    running.stop()
