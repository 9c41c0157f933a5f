"""LogicClient against real gRPC servers: which failures are tried on another node, and closing a
channel of a node that left never cancels the calls still running on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from gochat_py.config import RpcSettings
from gochat_py.discovery import Node
from gochat_py.rpc import client as rpc_client
from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc import logic_pb2_grpc
from gochat_py.rpc.client import LogicClient, RpcError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Logic(logic_pb2_grpc.LogicServicer):
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.started = asyncio.Event()

    async def PushRoom(self, request: pb.PushRoomRequest, context: Any) -> pb.Reply:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(self.delay)
        return pb.Reply(code=0)


@contextlib.asynccontextmanager
async def serving(servicer: Logic) -> AsyncIterator[str]:
    server = grpc.aio.server()
    logic_pb2_grpc.add_LogicServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def proxy(target: str) -> AsyncIterator[tuple[str, Callable[[], None]]]:
    """A TCP relay to ``target`` and a function that cuts every connection through it."""
    host, port = target.rsplit(":", 1)
    writers: list[asyncio.StreamWriter] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writers.extend((writer, up_writer))
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def cut() -> None:
        for writer in writers:
            writer.transport.abort()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", cut
    finally:
        cut()
        server.close()


class Watcher:
    def __init__(self, *addresses: str) -> None:
        self.nodes = {a: Node(a, f"logic-{n}", "logic") for n, a in enumerate(addresses)}

    def on_change(self, listener: Callable[[dict[str, Node]], None]) -> None:
        self.listener = listener

    async def wait_changed(self, timeout: float) -> None:
        await asyncio.sleep(0)


@pytest.fixture
def first_choice(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Makes the client try ``address`` first (it picks at random otherwise)."""

    def prefer(address: str) -> None:
        monkeypatch.setattr(rpc_client.random, "choice", lambda c: address if address in c else c[0])

    return prefer


async def test_a_node_that_cannot_be_reached_is_skipped_for_another(first_choice: Callable[[str], None]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = Logic()
    async with serving(live) as address:
        first_choice(dead)
        client = LogicClient(Watcher(dead, address), RpcSettings(timeout=3))  # type: ignore[arg-type]
        reply = await client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m"))
        await client.close()
    assert reply.code == 0 and live.calls == 1


def retries(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == "retrying logic call on another node"]  # type: ignore[attr-defined]


async def test_a_retry_on_another_node_logs_one_line_saying_which_node_failed_and_why(
    first_choice: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with serving(Logic()) as address:
        first_choice(dead)
        client = LogicClient(Watcher(dead, address), RpcSettings(timeout=3))  # type: ignore[arg-type]
        with caplog.at_level(logging.INFO, logger="gochat.rpc"):
            await client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m"))
            first_choice(address)
            await client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m"))  # no retry, no line
        await client.close()
    [record] = [r for r in caplog.records if r.getMessage() == "retrying logic call on another node"]
    assert record.levelno == logging.WARNING
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["error"]  # gRPC's wording of why, which never_sent read
    assert {k: v for k, v in fields.items() if k != "error"} == {
        "method": "PushRoom",
        "attempt": 2,
        "node": address,
        "failed_node": dead,
        "code": "UNAVAILABLE",
    }


async def test_a_call_on_only_dead_nodes_logs_each_retry_then_the_failure(
    first_choice: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    first_choice(dead[0])
    client = LogicClient(Watcher(*dead), RpcSettings(timeout=3, attempts=3))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="gochat.rpc"), pytest.raises(RpcError):
        await client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m"))
    await client.close()
    logged = retries(caplog)
    assert [f["attempt"] for f in logged] == [2, 3] and logged[0]["failed_node"] == dead[0]
    assert [f["failed_node"] for f in logged[1:]] == [logged[0]["node"]]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING][-1] == "logic call failed"


async def test_a_call_whose_connection_breaks_is_not_run_again_elsewhere(
    first_choice: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    """The node may have queued the message already: a second node would queue it twice."""
    behind, other = Logic(delay=1.0), Logic()
    async with serving(behind) as target, serving(other) as other_address, proxy(target) as (via, cut):
        first_choice(via)
        client = LogicClient(Watcher(via, other_address), RpcSettings(timeout=3))  # type: ignore[arg-type]
        call = asyncio.create_task(client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m")))
        await asyncio.wait_for(behind.started.wait(), 5)
        cut()  # the node dies with the call in its hands
        with pytest.raises(RpcError, match="UNAVAILABLE"):
            await asyncio.wait_for(call, 5)
        await client.close()
    assert (behind.calls, other.calls) == (1, 0)
    assert retries(caplog) == []  # not tried again, so not logged as a retry


async def test_a_node_leaving_etcd_does_not_cancel_the_calls_it_is_answering() -> None:
    """A logic process stopping cleanly deregisters first, then answers what it has in hand."""
    slow = Logic(delay=0.5)
    async with serving(slow) as address:
        watcher = Watcher(address)
        client = LogicClient(watcher, RpcSettings(timeout=3))  # type: ignore[arg-type]
        call = asyncio.create_task(client.call("PushRoom", pb.PushRoomRequest(room_id=1, msg="m")))
        await asyncio.wait_for(slow.started.wait(), 5)
        watcher.nodes = {}
        watcher.listener({})  # the node's key is gone: its channel is closed
        reply = await asyncio.wait_for(call, 5)
        await client.close()
    assert reply.code == 0
