"""A private message sent over a protocol-v2 socket reaches the sender's other v2 sockets too, on
any connect node, as the event the recipient gets with the recipient as the other party; never
the socket it was sent from (that one has the send's reply) and never a v1 socket (the original
echoes nothing to a sender).  Real processes; every v2 frame is checked against the schema."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

from tests.e2e.harness import ApiClient, Cluster, WsClient, op_is
from tests.e2e.v2_wire import V2Socket, welcome


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def user(api: ApiClient) -> tuple[str, int, str]:
    name = unique("echo")
    token = await api.register(name)
    return token, await api.user_id(token), name


async def ws_socket(cluster: Cluster, token: str) -> V2Socket:
    socket = await V2Socket.websocket(cluster.ws_url, {"v": 2, "authToken": token})
    await welcome(socket)
    return socket


async def tcp_socket(cluster: Cluster, token: str) -> V2Socket:
    socket = await V2Socket.tcp("127.0.0.1", cluster.tcp_ports[0], {"v": 2, "authToken": token})
    await welcome(socket)
    return socket


async def nothing_between(socket: V2Socket, after_cid: int, message_id: str) -> None:
    """Proves ``socket`` got no event of ``message_id``: a ping sent now is answered after anything
    the server wrote to it before, and nothing between the send's reply and the ping's is one."""
    ping = await socket.command("ping")
    await socket.reply(ping)
    start = next(i for i, b in enumerate(socket.seen) if b.get("cid") == after_cid)
    end = next(i for i, b in enumerate(socket.seen) if b.get("cid") == ping)
    between = socket.seen[start + 1 : end]
    assert not [b for b in between if b.get("id") == message_id], between
    assert not [b for b in socket.seen if b.get("type") == "message" and b.get("id") == message_id]


def event_of(socket: V2Socket, message_id: str) -> list[dict[str, Any]]:
    return [b for b in socket.seen if b.get("type") == "message" and b.get("id") == message_id]


async def test_a_private_send_reaches_the_senders_other_v2_sockets_not_the_sending_or_v1_ones(
    cluster: Cluster,
) -> None:
    room = random.randint(1000, 10**9)
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, ann), (bob_token, bob_id, _) = await user(api), await user(api)
        first, second = await ws_socket(cluster, ann_token), await ws_socket(cluster, ann_token)
        bob = await ws_socket(cluster, bob_token)  # on the same node as ann's: same stream id there twice
        v1 = await WsClient(cluster.ws_url).join(ann_token, room)
        await v1.next_frame(op_is(5, roomId=room))

        cid = await first.command("send", to=bob_id, msg="seen everywhere", mid="e-1")
        sent = (await first.reply(cid))["result"]
        expected = {
            "type": "message",
            "user": bob_id,
            "to": bob_id,
            "id": sent["id"],
            "from": {"id": ann_id, "name": ann},
            "msg": "seen everywhere",
            "time": int(sent["id"].split("-")[0]),
        }
        assert await second.wait_for(lambda b: b.get("id") == sent["id"]) == expected
        assert await bob.wait_for(lambda b: b.get("id") == sent["id"]) == {**expected, "user": ann_id}
        await nothing_between(first, cid, sent["id"])
        # a room message queued after it reaches the v1 socket, and nothing private came before it
        await api.post("/push/pushRoom", {"authToken": bob_token, "roomId": room, "msg": "marker"})
        await v1.next_frame(op_is(3, msg="marker"))
        assert not [f for f in v1.seen if json.loads(f).get("op") == 2], v1.seen
        assert all("type" not in json.loads(f) for f in v1.seen)

        # the same mid again is the same message: queued once, so no second copy anywhere
        assert await second.call("send", to=bob_id, msg="seen everywhere", mid="e-1") == sent
        # a reply from bob goes to ann's sockets as before, once each, not to bob's sender
        back = await bob.call("send", to=ann_id, msg="back")
        for socket in (first, second):
            event = await socket.wait_for(lambda b: b.get("id") == back["id"])
            assert event["user"] == bob_id and event["from"]["id"] == bob_id
        await asyncio.sleep(0.3)
        assert len(event_of(second, sent["id"])) == 1 and len(event_of(bob, sent["id"])) == 1
        assert not event_of(first, sent["id"])
        # v1, as the original: the messages to ann, none of ann's own
        await v1.next_frame(op_is(2, msg="back"))
        assert [json.loads(f)["msg"] for f in v1.seen if json.loads(f).get("op") == 2] == ["back"]
        await v1.close()
        for socket in (first, second, bob):
            await socket.close()


async def test_the_echo_crosses_connect_nodes_and_transports_both_ways(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, _), (bob_token, bob_id, _) = await user(api), await user(api)
        over_tcp, over_ws = await tcp_socket(cluster, ann_token), await ws_socket(cluster, ann_token)
        bob = await ws_socket(cluster, bob_token)

        cid = await over_tcp.command("send", to=bob_id, msg="from the tcp node")
        sent = (await over_tcp.reply(cid))["result"]
        echo = await over_ws.wait_for(lambda b: b.get("id") == sent["id"])
        assert echo["user"] == bob_id and echo["to"] == bob_id and echo["msg"] == "from the tcp node"
        await bob.wait_for(lambda b: b.get("id") == sent["id"])
        await nothing_between(over_tcp, cid, sent["id"])

        cid = await over_ws.command("send", to=bob_id, msg="from the websocket node")
        sent = (await over_ws.reply(cid))["result"]
        echo = await over_tcp.wait_for(lambda b: b.get("id") == sent["id"])
        assert echo["user"] == bob_id and echo["from"]["id"] == ann_id
        await nothing_between(over_ws, cid, sent["id"])
        for socket in (over_tcp, over_ws, bob):
            await socket.close()


async def test_an_http_send_reaches_every_v2_socket_of_the_sender_and_a_send_to_oneself_arrives_once(
    cluster: Cluster,
) -> None:
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, _), (_, bob_id, _) = await user(api), await user(api)
        first, second = await ws_socket(cluster, ann_token), await tcp_socket(cluster, ann_token)
        reply = await api.post(
            "/push/push", {"authToken": ann_token, "toUserId": str(bob_id), "roomId": 1, "msg": "over http"}
        )
        assert reply["code"] == 0, reply
        # bob has no socket at all: the copies to ann go out all the same
        for socket in (first, second):
            event = await socket.wait_for(lambda b: b.get("msg") == "over http")
            assert event["user"] == bob_id and event["from"]["id"] == ann_id

        cid = await first.command("send", to=ann_id, msg="note to self")
        own = (await first.reply(cid))["result"]
        for socket in (first, second):  # as the recipient, as before: no copy on top
            event = await socket.wait_for(lambda b: b.get("id") == own["id"])
            assert event["user"] == ann_id
        ping = await first.call("ping")
        assert ping["time"] > 0
        await second.call("ping")
        for socket in (first, second):
            assert len(event_of(socket, own["id"])) == 1
            assert len([b for b in socket.seen if b.get("msg") == "over http"]) == 1
        await first.close()
        await second.close()
