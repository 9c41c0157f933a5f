"""The v2 client library (gochat_py.client.chat) against real processes: every message once, in
order, when its connect node is killed and restarted or its connection is cut; publish and send
acknowledged with the stored ids; a retry with the same client message id stored once."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gochat_py.client.api import login, whoami
from gochat_py.client.backoff import Backoff
from gochat_py.client.chat import ChatClient, ClientEvent, Closed, CommandError, Connected, Disconnected
from gochat_py.client.transport import Connector, tcp_connector, websocket_connector
from gochat_py.protocol.message_id import parse_id
from gochat_py.protocol.v2_messages import MemberJoined, PrivateMessage, RoomMessage, TypingEvent
from tests.e2e.harness import Cluster, eventually, free_port
from tests.e2e.relay import Relay

CLUSTER_MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")
CLUSTER_ENV = {"GOCHAT_CONNECT__V2_FRAME_SIZE": "2048"}  # websocket frames from clients, 2 KB at most
WAIT = 30.0  # a busy two-core machine; every wait ends as soon as its condition holds


class Seen:
    """Collects a client's events in the background."""

    def __init__(self, client: ChatClient) -> None:
        self.events: list[ClientEvent] = []
        self.task = asyncio.create_task(self._collect(client))

    async def _collect(self, client: ChatClient) -> None:
        async for event in client.events():
            self.events.append(event)

    def room(self, room: int) -> list[RoomMessage]:
        return [e for e in self.events if isinstance(e, RoomMessage) and e.room == room]

    def private(self) -> list[PrivateMessage]:
        return [e for e in self.events if isinstance(e, PrivateMessage)]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        await eventually(condition, WAIT, what)


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def user(cluster: Cluster, name: str) -> tuple[str, int]:
    token = await login(cluster.api_url, name, "pw-123456", register=True)
    user_id, user_name = await whoami(cluster.api_url, token)
    assert user_name == name
    return token, user_id


def client(connect: Connector, token: str) -> ChatClient:
    return ChatClient(connect, token, backoff=Backoff(initial=0.1, maximum=1.0))


def tcp_address(cluster: Cluster) -> str:
    return f"127.0.0.1:{cluster.tcp_ports[0]}"


def increasing(messages: list[RoomMessage] | list[PrivateMessage]) -> bool:
    keys = [parse_id(m.id) for m in messages]
    return all(a is not None and b is not None and a < b for a, b in itertools.pairwise(keys))


async def test_a_client_whose_node_is_killed_and_restarted_sees_every_message_once(cluster: Cluster) -> None:
    port, rpc = free_port(), f"127.0.0.1:{free_port()}"
    node_env = {
        "GOCHAT_CONNECT_WEBSOCKET__BIND": f"127.0.0.1:{port}",
        "GOCHAT_CONNECT_WEBSOCKET__RPC_BIND": rpc,
        "GOCHAT_CONNECT_WEBSOCKET__SERVER_ID": "ws-v2-victim",
    }
    victim = cluster.start_module("connect_websocket", name="connect_websocket_v2_victim", **node_env)
    room = random.randint(10**6, 10**9)
    t = tag()
    ann_token, ann_id = await user(cluster, f"ann{t}")
    bob_token, _ = await user(cluster, f"bob{t}")
    async with (
        client(websocket_connector(f"ws://127.0.0.1:{port}/ws"), ann_token) as ann,
        client(websocket_connector(cluster.ws_url), bob_token) as bob,
    ):
        seen = Seen(ann)
        await ann.subscribe(room)
        await bob.subscribe(room)
        stored: dict[str, str] = {}
        ann_while_down: asyncio.Task[str] | None = None
        restart: asyncio.Task[Any] | None = None
        for n in range(30):
            if n == 10:
                await seen.until(lambda: len(seen.room(room)) == 10, "ann got the first ten")
                victim.kill()
            if n == 12:
                ann_while_down = asyncio.create_task(ann.publish(room, "ann while down"))
            if n == 20:
                restart = asyncio.create_task(
                    asyncio.to_thread(
                        cluster.start_module, "connect_websocket", "connect_websocket_v2_victim", **node_env
                    )
                )
            text = f"bob {n}"
            stored[text] = await bob.publish(room, text)
            if n in (11, 15, 25):
                await bob.send(ann_id, f"psst {n}")
            await asyncio.sleep(0.05)
        assert restart is not None and ann_while_down is not None
        await restart
        ann_id_of_own = await asyncio.wait_for(ann_while_down, WAIT)
        await seen.until(lambda: len(seen.room(room)) >= 31 and len(seen.private()) >= 3, "ann caught up")
        await asyncio.sleep(0.5)  # nothing more may come: a repeat would show up now
    await asyncio.wait_for(seen.task, WAIT)  # ends with Closed

    messages = seen.room(room)
    assert [m.msg for m in messages if m.sender.name != f"ann{t}"] == [f"bob {n}" for n in range(30)]
    assert [m.msg for m in messages if m.sender.name == f"ann{t}"] == ["ann while down"]
    assert {m.msg: m.id for m in messages} == {**stored, "ann while down": ann_id_of_own}
    assert increasing(messages)
    assert [m.msg for m in seen.private()] == ["psst 11", "psst 15", "psst 25"]
    assert increasing(seen.private())
    assert seen.of(Disconnected), "the kill was not noticed"
    connects = seen.of(Connected)
    assert [c.resumed for c in connects][:1] == [False] and any(c.resumed for c in connects)
    assert isinstance(seen.events[-1], Closed)


async def test_a_tcp_client_whose_connection_is_cut_again_and_again_sees_every_message_once(
    cluster: Cluster,
) -> None:
    relay = await Relay(tcp_address(cluster)).start()
    room = random.randint(10**6, 10**9)
    t = tag()
    ann_token, ann_id = await user(cluster, f"ann{t}")
    bob_token, _ = await user(cluster, f"bob{t}")
    try:
        async with (
            client(tcp_connector(relay.address), ann_token) as ann,
            client(websocket_connector(cluster.ws_url), bob_token) as bob,
        ):
            seen = Seen(ann)
            await ann.subscribe(room)
            await bob.subscribe(room)
            mine: list[str] = []
            for n in range(40):
                if n % 8 == 4:
                    await eventually(lambda: ann.connected, WAIT, "ann connected again")
                    assert relay.cut() > 0
                await bob.publish(room, f"bob {n}")
                if n % 5 == 0:
                    await bob.send(ann_id, f"psst {n}")
                if n % 10 == 7:
                    mine.append(await ann.publish(room, f"ann {n}"))
            await seen.until(lambda: len(seen.room(room)) >= 44 and len(seen.private()) >= 8, "ann caught up")
            await asyncio.sleep(0.5)
    finally:
        await relay.close()
    messages = seen.room(room)
    assert [m.msg for m in messages if m.msg.startswith("bob")] == [f"bob {n}" for n in range(40)]
    assert [m.id for m in messages if m.msg.startswith("ann")] == mine
    assert increasing(messages)
    assert [m.msg for m in seen.private()] == [f"psst {n}" for n in range(0, 40, 5)]
    assert len(seen.of(Disconnected)) >= 4 and relay.connections >= 5


async def test_a_publish_whose_reply_was_lost_is_retried_with_its_mid_and_stored_once(cluster: Cluster) -> None:
    relay = await Relay(cluster.ws_url.removeprefix("ws://").removesuffix("/ws")).start()
    room = random.randint(10**6, 10**9)
    t = tag()
    ann_token, ann_id = await user(cluster, f"ann{t}")
    bob_token, bob_id = await user(cluster, f"bob{t}")
    try:
        async with (
            client(websocket_connector(f"ws://{relay.address}/ws"), ann_token) as ann,
            client(websocket_connector(cluster.ws_url), bob_token) as bob,
        ):
            seen_by_bob = Seen(bob)
            await ann.subscribe(room)
            await bob.subscribe(room)
            relay.mute()  # the server gets the publish, ann never hears back
            publishing = asyncio.create_task(ann.publish(room, "only once"))
            await seen_by_bob.until(lambda: len(seen_by_bob.room(room)) == 1, "bob got the message")
            assert not publishing.done()
            (unacked,) = ann.state.unacked()
            relay.mute(False)
            relay.cut()  # ann reconnects and sends the publish again with the same mid
            stored_id = await asyncio.wait_for(publishing, WAIT)
            assert stored_id == seen_by_bob.room(room)[0].id
            assert ann.state.unacked() == []

            relay.mute()  # the same for a private message
            sending = asyncio.create_task(ann.send(bob_id, "psst once"))
            await seen_by_bob.until(lambda: len(seen_by_bob.private()) == 1, "bob got the private message")
            relay.mute(False)
            relay.cut()
            private_id = await asyncio.wait_for(sending, WAIT)
            assert private_id == seen_by_bob.private()[0].id

            room_page = await bob.history(room=room)
            private_page = await bob.history(user=ann_id)
            await asyncio.sleep(0.5)
    finally:
        await relay.close()
    assert unacked.msg == "only once" and unacked.mid
    assert [(m.id, m.msg) for m in room_page.messages] == [(stored_id, "only once")]
    assert [(m.id, m.msg) for m in private_page.messages] == [(private_id, "psst once")]
    assert [m.msg for m in seen_by_bob.room(room)] == ["only once"]
    assert [m.msg for m in seen_by_bob.private()] == ["psst once"]


async def test_commands_answer_with_what_the_server_holds(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    t = tag()
    ann_token, ann_id = await user(cluster, f"ann{t}")
    bob_token, bob_id = await user(cluster, f"bob{t}")
    async with (
        client(tcp_connector(tcp_address(cluster)), ann_token) as ann,
        client(websocket_connector(cluster.ws_url), bob_token) as bob,
    ):
        seen_by_ann, seen_by_bob = Seen(ann), Seen(bob)
        first = await ann.subscribe(room)
        assert first.members == {str(ann_id): f"ann{t}"} and first.count == 1
        await bob.subscribe(room)
        await seen_by_ann.until(lambda: bool(seen_by_ann.of(MemberJoined)), "ann saw bob join")
        presence = await ann.presence(room)
        assert presence.members == {str(ann_id): f"ann{t}", str(bob_id): f"bob{t}"} and presence.count == 2
        ids = [await ann.publish(room, f"hello {n}") for n in range(3)]
        page = await bob.history(room=room, limit=2)
        assert [m.id for m in page.messages] == ids[:0:-1] and page.more
        older = await bob.history(room=room, before=ids[1])
        assert [m.msg for m in older.messages] == ["hello 0"] and not older.more
        await ann.typing(room=room)
        await seen_by_bob.until(lambda: bool(seen_by_bob.of(TypingEvent)), "bob saw ann typing")
        private_id = await bob.send(ann_id, "hi ann")
        await seen_by_ann.until(lambda: bool(seen_by_ann.private()), "ann got the private message")
        now = await ann.ping()
    (typing,) = seen_by_bob.of(TypingEvent)
    assert typing.room == room and typing.sender.id == ann_id
    (private,) = seen_by_ann.private()
    assert (private.id, private.msg, private.sender.id, private.to, private.user) == (
        private_id,
        "hi ann",
        bob_id,
        ann_id,
        bob_id,
    )
    assert abs(now - time.time() * 1000) < 60_000  # the server's clock, in milliseconds
    assert [m.msg for m in seen_by_bob.room(room)] == ["hello 0", "hello 1", "hello 2"]


async def test_a_refused_token_closes_the_client_for_good(cluster: Cluster) -> None:
    for connect in (websocket_connector(cluster.ws_url), tcp_connector(tcp_address(cluster))):
        refused = client(connect, "not-a-token")
        seen = Seen(refused)
        try:
            await asyncio.wait_for(refused.start(), WAIT)
        except Exception as exc:
            assert type(exc).__name__ == "ClientClosed", exc
        else:
            raise AssertionError("a bad token was welcomed")
        await asyncio.wait_for(seen.task, WAIT)
        assert isinstance(seen.events[-1], Closed) and "refused" in seen.events[-1].reason
        await refused.close()


async def test_the_readme_example_runs(cluster: Cluster) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    code = readme.split("## Python client library", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    name = f"ann{tag()}"
    await login(cluster.api_url, name, "secret", register=True)
    code = (
        code.replace("http://127.0.0.1:7070", cluster.api_url)
        .replace("ws://127.0.0.1:7000/ws", cluster.ws_url)
        .replace('"ann", "secret"', f'"{name}", "secret"')
    )
    assert name in code and cluster.ws_url in code
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while not any(line.startswith(f"[room 1] {name}: hello") for line in lines):
                line = (await process.stdout.readline()).decode()
                assert line, f"the example ended: {lines}"
                lines.append(line)
    finally:
        process.kill()
        await process.wait()
    assert lines[0].startswith("stored as ") and "last page:" in lines[0], lines


async def test_a_message_too_big_for_a_frame_is_refused_before_it_is_sent(cluster: Cluster) -> None:
    """The server would close the socket (1009), and the retry on the next socket would be closed
    again: the client refuses it instead, and the socket stays."""
    room = random.randint(10**6, 10**9)
    token, _ = await user(cluster, f"ann{tag()}")
    async with client(websocket_connector(cluster.ws_url), token) as ann:
        seen = Seen(ann)
        assert ann.welcome is not None and ann.welcome.limits.frame_size == 2048
        await ann.subscribe(room)
        with pytest.raises(CommandError) as refused:
            await ann.publish(room, "é" * 1200)  # 1200 characters, 2400 bytes
        assert refused.value.name == "too_long"
        await ann.publish(room, "x" * 1900)
        await seen.until(lambda: len(seen.room(room)) == 1, "the message that fits arrived")
        assert ann.state.unacked() == []
    assert not seen.of(Disconnected)
