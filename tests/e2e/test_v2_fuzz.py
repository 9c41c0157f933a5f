"""Property-based fuzzing of protocol-v2 commands against a live connect node: whatever a client
sends after its hello, every message gets exactly one answer (a result or a clear error, with its
cid when it had a readable one), the socket stays open, and every process lives on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import ApiClient, Cluster
from tests.e2e.v2_wire import V2Socket, welcome

# fuzzing sends far more than a person would: the flood limits would close the socket
CLUSTER_ENV = {"GOCHAT_CONNECT__COMMAND_RATE": "100000", "GOCHAT_CONNECT__COMMAND_BURST": "100000"}
COMMANDS = ["subscribe", "unsubscribe", "publish", "send", "history", "presence", "typing", "ping"]
FIELDS = ["room", "to", "user", "msg", "mid", "since", "before", "limit", "v", "authToken"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["1-0", "0-0", "18446744073709551616-0", "", "\u2028", "9" * 30]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
commands = st.fixed_dictionaries(
    {
        "cid": st.one_of(st.integers(min_value=1, max_value=2**31 - 1), values),
        "cmd": st.one_of(st.sampled_from(COMMANDS), values),
    },
    optional={name: values for name in FIELDS} | {"room": st.integers(-5, 2**64), "to": st.integers(-5, 2**64)},
)
messages = st.one_of(
    commands.map(json.dumps),
    values.map(json.dumps),
    st.text(max_size=60),  # not JSON at all
    st.binary(max_size=60),  # a binary frame
)


@pytest.fixture(scope="module")
def v2_token(cluster: Cluster) -> str:
    async def register() -> str:
        async with ApiClient(cluster.api_url) as api:
            return await api.register("fuzz-v2")

    return asyncio.run(register())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(batch=st.lists(messages, min_size=1, max_size=8))
def test_every_command_gets_one_answer_and_nothing_breaks(cluster: Cluster, v2_token: str, batch: list[Any]) -> None:
    asyncio.run(_exchange(cluster, v2_token, batch))


async def _exchange(cluster: Cluster, token: str, batch: list[str | bytes]) -> None:
    socket = await V2Socket.websocket(cluster.ws_url, {"v": 2, "authToken": token})
    await welcome(socket)
    try:
        for message in batch:
            await socket.send_raw(message)
        # a ping after the batch: its answer comes after every answer to the batch (in order)
        ping = 2**31 - 7  # a cid the batch is unlikely to use
        await socket.send_raw(json.dumps({"cid": ping, "cmd": "ping"}))
        await socket.reply(ping, timeout=15)
        answers = [b for b in socket.seen if "cid" in b and b["cid"] != ping]
        assert len(answers) == len(batch), (batch, answers)
        for answer in answers:
            if "error" in answer:
                assert answer["error"]["message"], answer
        assert not socket.closed.is_set()
    finally:
        await socket.close()


def test_processes_survived_the_fuzzing(cluster: Cluster, v2_token: str) -> None:
    for module in ("connect_websocket", "connect_tcp", "logic", "api", "task"):
        for process in cluster.processes(module):
            assert process.running(), f"{module} died: {cluster.tails()}"
    assert asyncio.run(_ping(cluster, v2_token))


async def _ping(cluster: Cluster, token: str) -> bool:
    socket = await V2Socket.websocket(cluster.ws_url, {"v": 2, "authToken": token})
    await welcome(socket)
    result = await socket.call("ping")
    await socket.close()
    return "time" in result
