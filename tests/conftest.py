"""Shared fixtures: one real Redis and one real etcd per test session (end-to-end tests only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Infra, running_infra


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with running_infra(tmp_path_factory, "infra") as running:
        yield running
