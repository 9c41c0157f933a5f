"""/healthz and /readyz of every module, as an orchestrator probes them: alive while the loop
answers, ready while its dependencies answer; Redis stopped and started again, logic stopped.

This module runs on its own Redis and etcd, so stopping Redis disturbs no other test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Cluster, Infra, eventually, probe, running_infra, scrape

# what each module's /readyz checks
CHECKS = {
    "logic": {"loop", "etcd", "redis", "database"},
    "connect_websocket": {"loop", "etcd", "logic"},
    "connect_tcp": {"loop", "etcd", "logic"},
    "task": {"loop", "etcd", "redis", "database"},
    "api": {"loop", "etcd", "logic"},
    "site": {"loop", "files"},
}
USES_REDIS = ("logic", "task")


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with running_infra(tmp_path_factory, "infra_health") as running:
        yield running


def test_every_module_is_alive_and_ready_saying_what_it_checked(cluster: Cluster) -> None:
    for module, checks in CHECKS.items():
        status, body = probe(cluster, module, "/healthz")
        assert status == 200 and body["alive"] is True and body["module"] == module, (module, body)
        assert set(body["checks"]) == {"loop"}
        status, body = probe(cluster, module, "/readyz")
        assert status == 200, (module, body)
        assert body["ready"] is True and body["module"] == module and "failed" not in body
        assert set(body["checks"]) == checks, (module, body)
    assert probe(cluster, "logic", "/readyz")[1]["checks"]["etcd"].startswith("registered as 127.0.0.1:")
    # /metrics is still there beside them
    assert "gochat_admission_wait_seconds_count" in scrape(cluster, "logic")


async def test_readyz_fails_while_redis_is_stopped_and_recovers_after(cluster: Cluster, infra: Infra) -> None:
    infra.stop_redis()
    try:
        for module in USES_REDIS:
            await eventually(lambda m=module: probe(cluster, m, "/readyz")[0] == 503, 15, f"{module} not ready")
            status, body = probe(cluster, module, "/readyz")
            assert status == 503 and body["ready"] is False and body["failed"] == ["redis"], body
            assert "Connection" in body["checks"]["redis"], body  # says why
            etcd = {"logic": "registered as 127.0.0.1:", "task": "2 ConnectRpc node(s) known"}[module]
            assert body["checks"]["etcd"].startswith(etcd), body
            assert probe(cluster, module, "/healthz")[0] == 200  # alive all the same: no restart wanted
        for module in set(CHECKS) - set(USES_REDIS):
            status, body = probe(cluster, module, "/readyz")
            assert status == 200, (module, body)  # they do not talk to Redis themselves
    finally:
        infra.start_redis()
    for module in USES_REDIS:
        await eventually(lambda m=module: probe(cluster, m, "/readyz")[0] == 200, 20, f"{module} ready again")
    await cluster.logged('msg="not ready" failed=redis')
    await cluster.logged('msg="ready for traffic"')
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()


async def test_api_and_connect_nodes_are_not_ready_without_a_reachable_logic(cluster: Cluster) -> None:
    (logic,) = cluster.processes("logic")
    logic.stop()
    try:
        for module in ("api", "connect_websocket", "connect_tcp"):
            await eventually(lambda m=module: probe(cluster, m, "/readyz")[0] == 503, 20, f"{module} not ready")
            status, body = probe(cluster, module, "/readyz")
            assert status == 503 and body["failed"] == ["logic"], (module, body)
            assert "LogicRpc" in body["checks"]["logic"], body
            assert probe(cluster, module, "/healthz")[0] == 200
    finally:
        cluster.start_module("logic", name="logic_2")
    for module in ("api", "connect_websocket", "connect_tcp"):
        await eventually(lambda m=module: probe(cluster, m, "/readyz")[0] == 200, 30, f"{module} ready again")
