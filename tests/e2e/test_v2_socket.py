"""Protocol v2 against real processes: one socket in many rooms, sending with acks, presence,
typing, history, resume per room, errors as replies, abuse as closes, and v2 over TCP.  Every
frame received is checked against the published schema (tests/e2e/v2_wire.py)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import websockets

from tests.e2e.harness import ApiClient, Cluster, WsClient, eventually, op_is
from tests.e2e.v2_wire import V2Socket, welcome

CLUSTER_ENV = {
    "GOCHAT_CONNECT__MAX_ROOMS": "3",
    "GOCHAT_CONNECT__COMMAND_BURST": "60",
    "GOCHAT_CONNECT__COMMAND_RATE": "20",
    "GOCHAT_CONNECT__SESSION_CHECK": "1",
}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_room() -> int:
    return random.randint(1000, 10**9)


async def user(api: ApiClient) -> tuple[str, int, str]:
    name = unique("v2u")
    token = await api.register(name)
    return token, await api.user_id(token), name


async def connect(cluster: Cluster, token: str, **hello: Any) -> tuple[V2Socket, dict[str, Any]]:
    socket = await V2Socket.websocket(cluster.ws_url, {"v": 2, "authToken": token, **hello})
    return socket, await welcome(socket)


async def test_one_socket_follows_two_rooms_and_sends_with_acks(cluster: Cluster) -> None:
    room_a, room_b = new_room(), new_room()
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, ann), (bob_token, _, _) = await user(api), await user(api)
        ann_ws, hello = await connect(cluster, ann_token)
        assert hello["user"] == {"id": ann_id, "name": ann} and hello["v"] == 2
        assert hello["limits"]["rooms"] == 3 and hello["limits"]["message_length"] == 4096
        first = await ann_ws.call("subscribe", room=room_a)
        assert first == {"room": room_a, "members": {str(ann_id): ann}, "count": 1}
        await ann_ws.call("subscribe", room=room_b)
        bob_ws, _ = await connect(cluster, bob_token)
        await bob_ws.call("subscribe", room=room_a)
        v1 = await WsClient(cluster.ws_url).join(bob_token, room_b)  # a v1 socket beside them
        await v1.next_frame(op_is(5, roomId=room_b))

        sent_a = await ann_ws.call("publish", room=room_a, msg="to a")
        sent_b = await ann_ws.call("publish", room=room_b, msg="to b")
        await api.post("/push/pushRoom", {"authToken": bob_token, "roomId": room_b, "msg": "over http"})

        for text, room, ack in (("to a", room_a, sent_a), ("to b", room_b, sent_b)):
            event = await ann_ws.wait_for(lambda b, t=text: b.get("type") == "message" and b.get("msg") == t)
            assert event["room"] == room and event["id"] == ack["id"]
            assert event["from"] == {"id": ann_id, "name": ann}
            assert event["time"] == int(ack["id"].split("-")[0])
        await ann_ws.wait_for(lambda b: b.get("msg") == "over http" and b.get("room") == room_b)
        await bob_ws.wait_for(lambda b: b.get("msg") == "to a" and b.get("id") == sent_a["id"])
        assert not bob_ws.events("message", room=room_b)  # bob's v2 socket is not in room b
        # the v1 socket gets today's bodies, and no v2 events
        v1_frame = json.loads(await v1.next_frame(op_is(3, msg="to b")))
        assert list(v1_frame) == [
            "code", "msg", "fromUserId", "fromUserName", "toUserId", "toUserName", "roomId", "op", "createTime"
        ]  # fmt: skip
        await asyncio.sleep(0.3)
        assert all("type" not in json.loads(frame) for frame in v1.seen)
        for socket in (ann_ws, bob_ws):
            await socket.close()
        await v1.close()


async def test_private_send_is_acked_with_its_id_and_a_retry_with_the_same_mid_is_stored_once(
    cluster: Cluster,
) -> None:
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, ann), (bob_token, bob_id, _) = await user(api), await user(api)
        ann_ws, _ = await connect(cluster, ann_token)
        bob_ws, _ = await connect(cluster, bob_token)
        first = await ann_ws.call("send", to=bob_id, msg="psst", mid="m-1")
        again = await ann_ws.call("send", to=bob_id, msg="psst", mid="m-1")
        assert again == first
        other = await ann_ws.call("send", to=bob_id, msg="psst", mid="m-2")
        assert other != first
        event = await bob_ws.wait_for(lambda b: b.get("id") == first["id"])
        assert event == {
            "type": "message",
            "user": ann_id,
            "to": bob_id,
            "id": first["id"],
            "from": {"id": ann_id, "name": ann},
            "msg": "psst",
            "time": int(first["id"].split("-")[0]),
        }
        await bob_ws.wait_for(lambda b: b.get("id") == other["id"])
        await asyncio.sleep(0.3)
        assert len(bob_ws.events("message", id=first["id"])) == 1
        page = await bob_ws.call("history", user=ann_id)
        assert [m["id"] for m in page["messages"]] == [other["id"], first["id"]]  # newest first, once each
        assert page["messages"][0]["user"] == ann_id and page["more"] is False
        # the same mid from another socket of the same sender (a reconnect) is the same message
        ann_again, _ = await connect(cluster, ann_token)
        assert await ann_again.call("send", to=bob_id, msg="psst", mid="m-1") == first
        for socket in (ann_ws, ann_again, bob_ws):
            await socket.close()


async def test_presence_join_leave_and_typing(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, ann), (bob_token, bob_id, bob) = await user(api), await user(api)
        ann_ws, _ = await connect(cluster, ann_token)
        await ann_ws.call("subscribe", room=room)
        bob_ws, _ = await connect(cluster, bob_token)
        snapshot = await bob_ws.call("subscribe", room=room)
        assert snapshot["members"] == {str(ann_id): ann, str(bob_id): bob} and snapshot["count"] == 2
        joined = await ann_ws.wait_for(lambda b: b.get("type") == "join" and b["user"]["id"] == bob_id)
        assert joined == {"type": "join", "room": room, "user": {"id": bob_id, "name": bob}}
        assert await ann_ws.call("presence", room=room) == snapshot

        assert await bob_ws.call("typing", room=room) == {}
        typing = await ann_ws.wait_for(lambda b: b.get("type") == "typing")
        assert typing == {"type": "typing", "room": room, "from": {"id": bob_id, "name": bob}}
        # a few notices at once pass (limits: typing_rate 1/s, a burst of 3), then they are refused
        replies = [await bob_ws.reply(await bob_ws.command("typing", room=room)) for _ in range(4)]
        assert replies[-1]["error"]["code"] == 5, replies
        await asyncio.sleep(1.1)
        await bob_ws.call("typing", to=ann_id)
        await ann_ws.wait_for(lambda b: b.get("type") == "typing" and b.get("user") == bob_id)
        # a room's typing notices reach every subscriber, the typist's own sockets too (clients skip
        # those whose "from" is themselves); a private one reaches the recipient only
        assert all(event["room"] == room for event in bob_ws.events("typing"))

        await bob_ws.call("unsubscribe", room=room)
        await ann_ws.wait_for(lambda b: b.get("type") == "leave" and b["user"]["id"] == bob_id)
        assert (await ann_ws.call("presence", room=room))["members"] == {str(ann_id): ann}
        await bob_ws.call("subscribe", room=room)
        await bob_ws.close()  # closing leaves every room
        await eventually(lambda: len(ann_ws.events("leave", room=room)) == 2, 10, "second leave event")
        await ann_ws.close()


async def test_subscribe_with_since_resumes_that_room_only(cluster: Cluster) -> None:
    room, other_room = new_room(), new_room()
    async with ApiClient(cluster.api_url) as api:
        (ann_token, _, _), (bob_token, _, _) = await user(api), await user(api)
        ann_ws, _ = await connect(cluster, ann_token)
        await ann_ws.call("subscribe", room=room)
        first = await ann_ws.call("publish", room=room, msg="m0")
        await ann_ws.close()
        for n in range(1, 6):
            await api.post("/push/pushRoom", {"authToken": bob_token, "roomId": room, "msg": f"m{n}"})
            await api.post("/push/pushRoom", {"authToken": bob_token, "roomId": other_room, "msg": f"o{n}"})
        back, _ = await connect(cluster, ann_token)
        await back.call("subscribe", room=room, since=first["id"])
        await back.call("subscribe", room=other_room, since="garbage")
        await back.wait_for(lambda b: b.get("msg") == "m5")
        texts = [b["msg"] for b in back.events("message", room=room)]
        assert texts == ["m1", "m2", "m3", "m4", "m5"]
        assert back.events("gap", room=other_room, reason="unknown")
        assert not back.events("gap", room=room)
        live = await back.call("publish", room=room, msg="live")
        await back.wait_for(lambda b: b.get("id") == live["id"])
        assert [b["msg"] for b in back.events("message", room=room)] == ["m1", "m2", "m3", "m4", "m5", "live"]
        await back.close()


async def test_client_mistakes_are_replies_and_the_socket_stays_open(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        token, _, _ = await user(api)
        ws, _ = await connect(cluster, token)
        assert (await ws.fails("publish", room=5, msg="x"))["code"] == 3  # not subscribed
        assert (await ws.fails("publish", room=5, msg="x" * 4097))["code"] == 6
        assert (await ws.fails("launch"))["code"] == 8
        assert (await ws.fails("subscribe", room="5"))["code"] == 1
        assert (await ws.fails("history", room=1, user=2))["code"] == 1
        await ws.send_raw("not json")
        error = await ws.wait_for(lambda b: b.get("cid") == 0)
        assert error["error"]["code"] == 1
        for room in (1, 2, 3):
            await ws.call("subscribe", room=new_room() + room)
        assert (await ws.fails("subscribe", room=7))["code"] == 4  # limits.rooms is 3 here
        assert "time" in await ws.call("ping")
        assert not ws.closed.is_set()
        await ws.close()


async def test_abuse_and_ended_sessions_close_the_socket(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        token, _, _ = await user(api)
        # a frame over limits.frame_size: 1009
        big, hello = await connect(cluster, token)
        await big.send_raw(json.dumps({"cid": 1, "cmd": "ping", "pad": "x" * hello["limits"]["frame_size"]}))
        await asyncio.wait_for(big.closed.wait(), 10)
        assert big.close_code == 1009
        # flooding: far more commands than the limits allow
        flood, _ = await connect(cluster, token)
        for n in range(200):
            try:
                await flood.send_raw(json.dumps({"cid": n + 1, "cmd": "ping"}))
            except websockets.ConnectionClosed:
                break
        await asyncio.wait_for(flood.closed.wait(), 10)
        assert flood.close_code == 1008 and "flooding" in flood.close_reason
        assert flood.events("session_ended")
        # logout: a session_ended event, then 1008
        out, _ = await connect(cluster, token)
        await api.post("/user/logout", {"authToken": token})
        ended = await out.wait_for(lambda b: b.get("type") == "session_ended")
        assert ended["reason"] == "logged out"
        await asyncio.wait_for(out.closed.wait(), 10)
        assert out.close_code == 1008
        # a session that ended without a logout (a new login replaced the token) is found too
        name = unique("v2r")
        old = await api.register(name)
        stale, _ = await connect(cluster, old)
        login = await api.post("/user/login", {"userName": name, "passWord": "pw-123456"})
        assert login["code"] == 0
        await stale.wait_for(lambda b: b.get("type") == "session_ended", timeout=15)
        await asyncio.wait_for(stale.closed.wait(), 10)
        # a bad hello is refused like a bad join
        bad = await V2Socket.websocket(cluster.ws_url, {"v": 2, "authToken": "nope"})
        await asyncio.wait_for(bad.closed.wait(), 10)
        assert bad.close_code == 1008
        malformed = await V2Socket.websocket(cluster.ws_url, {"v": "two", "authToken": old})
        await asyncio.wait_for(malformed.closed.wait(), 10)
        assert malformed.close_code == 1008 and "hello" in malformed.close_reason


async def test_v2_over_tcp_speaks_the_same_commands_and_events(cluster: Cluster) -> None:
    room = new_room()
    host, port = "127.0.0.1", cluster.tcp_ports[0]
    async with ApiClient(cluster.api_url) as api:
        (ann_token, ann_id, _), (bob_token, bob_id, _) = await user(api), await user(api)
        tcp = await V2Socket.tcp(host, port, {"v": 2, "authToken": ann_token})
        assert (await welcome(tcp))["user"]["id"] == ann_id
        await tcp.call("subscribe", room=room)
        ws, _ = await connect(cluster, bob_token)
        await ws.call("subscribe", room=room)
        sent = await tcp.call("publish", room=room, msg="from tcp")
        await ws.wait_for(lambda b: b.get("id") == sent["id"] and b["msg"] == "from tcp")
        reply = await ws.call("publish", room=room, msg="to tcp")
        await tcp.wait_for(lambda b: b.get("id") == reply["id"])
        private = await ws.call("send", to=ann_id, msg="hi tcp")
        event = await tcp.wait_for(lambda b: b.get("id") == private["id"])
        assert event["user"] == bob_id
        assert (await tcp.fails("publish", room=room + 1, msg="x"))["code"] == 3
        await tcp.close()
        await ws.close()


async def test_member_lists_and_presence_events_stay_right_under_churn(cluster: Cluster) -> None:
    """Sockets subscribe, unsubscribe and close at random, concurrently; afterwards each room's
    presence is exactly the users with a socket in it, and an observer that applied the join and
    leave events to its first snapshot holds the same list."""
    rooms = [new_room() for _ in range(3)]
    rng = random.Random(7)
    async with ApiClient(cluster.api_url) as api:
        users = [await user(api) for _ in range(6)]
        observer_token, observer_id, observer_name = await user(api)
        observer, _ = await connect(cluster, observer_token)
        views: dict[int, dict[str, str]] = {}
        for room in rooms:
            views[room] = dict((await observer.call("subscribe", room=room))["members"])
        sockets = [(await connect(cluster, token))[0] for token, _, _ in users for _ in range(2)]
        owners = [users[n // 2] for n in range(len(sockets))]
        subscribed: list[set[int]] = [set() for _ in sockets]
        open_sockets = set(range(len(sockets)))

        async def churn(n: int) -> None:
            for _ in range(8):
                if n not in open_sockets:
                    return
                room = rng.choice(rooms)
                action = rng.random()
                if action < 0.55:
                    await sockets[n].call("subscribe", room=room)
                    subscribed[n].add(room)
                elif action < 0.9:
                    await sockets[n].call("unsubscribe", room=room)
                    subscribed[n].discard(room)
                else:
                    open_sockets.discard(n)
                    await sockets[n].close()

        await asyncio.gather(*(churn(n) for n in range(len(sockets))))
        expected = {
            room: {str(observer_id): observer_name}
            | {str(owners[n][1]): owners[n][2] for n in open_sockets if room in subscribed[n]}
            for room in rooms
        }

        def events_applied() -> dict[int, dict[str, str]]:
            result = {room: dict(members) for room, members in views.items()}
            for event in observer.seen:
                if event.get("type") in ("join", "leave") and event["room"] in result:
                    key = str(event["user"]["id"])
                    if event["type"] == "join":
                        result[event["room"]][key] = event["user"]["name"]
                    else:
                        result[event["room"]].pop(key, None)
            return result

        for room in rooms:
            presence = await observer.call("presence", room=room)
            assert presence["members"] == expected[room], room
            assert presence["count"] == len(expected[room])
        await eventually(lambda: events_applied() == expected, 10, "the observer's lists match presence")
        for n in open_sockets:
            await sockets[n].close()
        await observer.close()
