"""Kept messages end to end: ids on sockets that opt in, resume with ``since``, offline private
messages, the history endpoints, and history served from the database once Redis lost it."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import redis

from gochat_py.protocol.tcp_frame import FrameDecoder, encode_frame
from tests.e2e.harness import ApiClient, Cluster, WsClient, eventually, op_is

# A small hot store, so that "more was missed than is kept" is cheap to reach (but larger than what
# the resuming clients here miss while away).
CLUSTER_ENV = {"GOCHAT_HISTORY__SIZE": "150"}
HOT_SIZE = 150


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_room() -> int:
    return random.randint(1000, 10**9)


def body(frame: bytes) -> dict[str, Any]:
    return json.loads(frame)


def msgs(client: WsClient, op: int) -> list[dict[str, Any]]:
    return [b for b in map(body, client.seen) if b.get("op") == op]


def id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


async def send_room(api: ApiClient, token: str, room: int, text: str) -> None:
    reply = await api.post("/push/pushRoom", {"authToken": token, "roomId": room, "msg": text})
    assert reply["code"] == 0, reply


async def send_private(api: ApiClient, token: str, to_user: int, text: str) -> None:
    reply = await api.post("/push/push", {"authToken": token, "toUserId": str(to_user), "roomId": 1, "msg": text})
    assert reply["code"] == 0, reply


async def texts_arrive(client: WsClient, op: int, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    await eventually(lambda: len(msgs(client, op)) >= count, timeout, f"{count} op-{op} frames")
    return msgs(client, op)


async def test_a_socket_that_opts_in_gets_ids_and_a_v1_socket_gets_todays_bodies(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        plain = await WsClient(cluster.ws_url).join(bob, room)
        with_ids = await WsClient(cluster.ws_url).join(alice, room, since="")
        await plain.next_frame(op_is(5))
        await with_ids.next_frame(op_is(5))
        await send_room(api, alice, room, "hello")
        v1 = body(await plain.next_frame(op_is(3)))
        v2 = body(await with_ids.next_frame(op_is(3)))
        assert "id" not in v1
        assert list(v2) == [*list(v1), "id"]
        assert {k: v for k, v in v2.items() if k != "id"} == v1
        assert id_key(v2["id"]) > (0, 0)
        await plain.close()
        await with_ids.close()


async def test_resume_sends_what_was_missed_in_order_then_live(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        bob_id = await api.user_id(bob)
        first = await WsClient(cluster.ws_url).join(bob, room, since="")
        await first.next_frame(op_is(5))
        for n in range(3):
            await send_room(api, alice, room, f"before-{n}")
        seen = await texts_arrive(first, 3, 3)
        last_id = seen[-1]["id"]
        await first.close()

        for n in range(4):
            await send_room(api, alice, room, f"away-{n}")
        await send_private(api, alice, bob_id, "private while away")

        again = await WsClient(cluster.ws_url).join(bob, room, since=last_id)
        await send_room(api, alice, room, "live")
        got = await texts_arrive(again, 3, 5)
        assert [m["msg"] for m in got] == ["away-0", "away-1", "away-2", "away-3", "live"]
        assert [id_key(m["id"]) for m in got] == sorted(id_key(m["id"]) for m in got)
        private = await texts_arrive(again, 2, 1)
        assert [m["msg"] for m in private] == ["private while away"]
        assert not any(b.get("op") == 7 for b in map(body, again.seen))
        await again.close()


async def test_resume_under_a_running_sender_loses_and_repeats_nothing(cluster: Cluster) -> None:
    """The seam: a client that drops and rejoins with ``since`` several times while another
    keeps sending ends with every message once, in order."""
    room = new_room()
    sent: list[str] = []
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        stop = asyncio.Event()

        async def sender() -> None:
            n = 0
            while not stop.is_set():
                text = f"m{n}"
                await send_room(api, alice, room, text)
                sent.append(text)
                n += 1
                await asyncio.sleep(0.005)

        received: list[dict[str, Any]] = []
        since = ""
        running: asyncio.Task[None] | None = None
        clients: list[WsClient] = []
        for _ in range(6):
            client = await WsClient(cluster.ws_url).join(bob, room, since=since)
            clients.append(client)
            if running is None:  # "since": "" means from now on: send once the first join is in
                await client.next_frame(op_is(5))
                running = asyncio.create_task(sender())
            await asyncio.sleep(random.uniform(0.1, 0.3))
            await client.close()
            received += msgs(client, 3)
            if received:
                since = received[-1]["id"]
            await asyncio.sleep(random.uniform(0.05, 0.2))  # away: messages pile up
        stop.set()
        assert running is not None
        await running
        marker = f"end-{uuid.uuid4().hex[:6]}"
        await send_room(api, alice, room, marker)
        sent.append(marker)
        last = await WsClient(cluster.ws_url).join(bob, room, since=since)
        await last.next_frame(op_is(3, msg=marker))
        await last.close()
        received += msgs(last, 3)
    texts = [m["msg"] for m in received]
    assert not any(b.get("op") == 7 for c in clients for b in map(body, c.seen)), "a gap: nothing was tested"
    assert len(sent) > 50
    repeated = [t for t in texts if texts.count(t) > 1]
    assert texts == sent, f"lost {set(sent) - set(texts)}, repeated {repeated}"
    ids = [id_key(m["id"]) for m in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_since_unknown_or_too_old_says_so_then_sends_what_is_kept(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        watcher = await WsClient(cluster.ws_url).join(alice, room, since="")
        await watcher.next_frame(op_is(5))
        await send_room(api, alice, room, "first")
        first_id = (await texts_arrive(watcher, 3, 1))[0]["id"]
        for n in range(HOT_SIZE + 5):
            await send_room(api, alice, room, f"n{n}")
        await texts_arrive(watcher, 3, HOT_SIZE + 6)
        await watcher.close()

        for bad in ("garbage", 42, None, "9" * 40 + "-1", "x" * 300):
            client = await WsClient(cluster.ws_url).join(bob, room, since=bad)
            gap = body(await client.next_frame(lambda f: body(f).get("op") in (3, 7)))
            assert gap == {"op": 7, "reason": "unknown"}, bad
            kept = await texts_arrive(client, 3, HOT_SIZE)
            assert [m["msg"] for m in kept[:HOT_SIZE]] == [f"n{n}" for n in range(5, HOT_SIZE + 5)]
            await client.close()

        client = await WsClient(cluster.ws_url).join(bob, room, since=first_id)
        gap = body(await client.next_frame(lambda f: body(f).get("op") in (3, 7)))
        assert gap == {"op": 7, "reason": "too_old"}
        kept = await texts_arrive(client, 3, HOT_SIZE)
        assert [m["msg"] for m in kept] == [f"n{n}" for n in range(5, HOT_SIZE + 5)]
        await client.close()


async def test_private_messages_to_an_offline_user_arrive_once_when_they_join(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        bob_id = await api.user_id(bob)
        for n in range(3):
            await send_private(api, alice, bob_id, f"offline-{n}")
        plain = await WsClient(cluster.ws_url).join(bob, 0)  # a v1 client, no room
        got = await texts_arrive(plain, 2, 3)
        assert [m["msg"] for m in got] == ["offline-0", "offline-1", "offline-2"]
        assert all("id" not in m for m in got)
        await send_private(api, alice, bob_id, "live")
        await plain.next_frame(op_is(2, msg="live"))
        await plain.close()

        # Delivered once: the next join (the user was offline again) gets nothing old...
        await asyncio.sleep(0.3)  # the node reports what it delivered in its Disconnect call
        again = await WsClient(cluster.ws_url).join(bob, 0)
        await send_private(api, alice, bob_id, "marker")
        await again.next_frame(op_is(2, msg="marker"))
        assert [m["msg"] for m in msgs(again, 2)] == ["marker"]
        await again.close()


class TcpJoin:
    """A raw TCP client: joins with op 6 (``extra`` fields added) and decodes the frames it gets."""

    def __init__(self, cluster: Cluster) -> None:
        self.port = cluster.tcp_ports[0]
        self.frames: list[dict[str, Any]] = []

    async def join(self, token: str, room: int, **extra: Any) -> TcpJoin:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(encode_frame(json.dumps({"op": 6, "authToken": token, "roomId": room, **extra}).encode()))
        self.decoder = FrameDecoder()
        return self

    async def until(self, done: Any, timeout: float = 10) -> list[dict[str, Any]]:
        async def read() -> None:
            while not done(self.frames):
                data = await self.reader.read(65536)
                assert data, "connection closed"
                self.frames.extend(json.loads(p) for p in self.decoder.feed(data) if p != b"ping msg")

        await asyncio.wait_for(read(), timeout)
        return self.frames

    def close(self) -> None:
        self.writer.close()


async def test_offline_private_messages_reach_a_tcp_client_too(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        bob_id = await api.user_id(bob)
        await send_private(api, alice, bob_id, "to tcp")
        client = await TcpJoin(cluster).join(bob, 5, since="")
        frames = await client.until(lambda fs: any(f.get("op") == 2 for f in fs))
        private = [f for f in frames if f.get("op") == 2]
        assert private[0]["msg"] == "to tcp" and "id" in private[0]
        client.close()


async def test_a_tcp_client_resumes_with_since_in_its_op_6_payload(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        first = await TcpJoin(cluster).join(bob, room, since="")
        await first.until(lambda fs: any(f.get("op") == 5 for f in fs))
        await send_room(api, alice, room, "seen")
        seen = [f for f in await first.until(lambda fs: any(f.get("op") == 3 for f in fs)) if f.get("op") == 3]
        first.close()
        for n in range(3):
            await send_room(api, alice, room, f"missed-{n}")
        again = await TcpJoin(cluster).join(bob, room, since=seen[0]["id"])
        await send_room(api, alice, room, "live")
        frames = await again.until(lambda fs: any(f.get("msg") == "live" for f in fs))
        assert [f["msg"] for f in frames if f.get("op") == 3] == ["missed-0", "missed-1", "missed-2", "live"]
        assert all("id" in f for f in frames if f.get("op") == 3)
        again.close()


async def test_history_pages_newest_first_and_private_history_both_ways(db_cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(db_cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        bob = await api.register(unique("bob"))
        carol = await api.register(unique("carol"))
        alice_id, bob_id = await api.user_id(alice), await api.user_id(bob)
        for n in range(7):
            await send_room(api, alice, room, f"r{n}")
        page = await api.post("/push/history", {"authToken": bob, "roomId": room, "limit": 3})
        assert page["code"] == 0 and page["message"] == "ok"
        assert [m["msg"] for m in page["data"]["messages"]] == ["r6", "r5", "r4"]
        assert page["data"]["more"] is True
        assert all(m["op"] == 3 and m["roomId"] == room for m in page["data"]["messages"])
        older = await api.post(
            "/push/history",
            {"authToken": bob, "roomId": room, "limit": 10, "before": page["data"]["messages"][-1]["id"]},
        )
        assert [m["msg"] for m in older["data"]["messages"]] == ["r3", "r2", "r1", "r0"]
        assert older["data"]["more"] is False

        await send_private(api, alice, bob_id, "a->b")
        await send_private(api, bob, alice_id, "b->a")
        await send_private(api, carol, bob_id, "c->b")
        for token, other, want in ((alice, bob_id, ["b->a", "a->b"]), (bob, alice_id, ["b->a", "a->b"])):
            reply = await api.post("/push/privateHistory", {"authToken": token, "userId": other})
            assert [m["msg"] for m in reply["data"]["messages"]] == want
            assert all(m["op"] == 2 for m in reply["data"]["messages"])

        errors = [
            ({"authToken": bob, "roomId": room, "limit": 101}, "limit must be from 1 to 100"),
            ({"authToken": bob, "roomId": room, "limit": -1}, "limit must be from 1 to 100"),
            ({"authToken": bob, "roomId": room, "before": "garbage"}, "before is not a message id"),
            ({"authToken": bob, "roomId": -4}, "roomId must be a positive integer"),
        ]
        for request, message in errors:
            assert await api.post("/push/history", request) == {"code": 1, "data": None, "message": message}
        assert (await api.post("/push/history", {"authToken": "nope", "roomId": room}))["code"] == 40000
        assert (await api.post("/push/privateHistory", {"authToken": bob, "userId": "2"}))["code"] == 1


async def test_history_comes_from_the_database_once_redis_lost_it(db_cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(db_cluster.api_url) as api:
        alice = await api.register(unique("alice"))
        for n in range(5):
            await send_room(api, alice, room, f"kept-{n}")
        r = redis.Redis.from_url(f"redis://{db_cluster.env['GOCHAT_REDIS__ADDRESS']}/{db_cluster.db}")

        async def archived() -> bool:
            # the history writer has caught up when its group has nothing pending or unread
            groups = {g["name"].decode(): g for g in r.xinfo_groups(db_cluster.settings.queue.stream)}
            history = groups.get("gochat_history")
            return bool(history) and history["pending"] == 0 and history.get("lag") == 0

        await eventually(archived, 15, "the history writer caught up")
        for key in r.scan_iter("gochat_hist_*"):
            r.delete(key)
        page = await api.post("/push/history", {"authToken": alice, "roomId": room})
        assert [m["msg"] for m in page["data"]["messages"]] == [f"kept-{n}" for n in reversed(range(5))]
        await send_room(api, alice, room, "after")
        page = await api.post("/push/history", {"authToken": alice, "roomId": room, "limit": 3})
        assert [m["msg"] for m in page["data"]["messages"]] == ["after", "kept-4", "kept-3"]
        client = await WsClient(db_cluster.ws_url).join(alice, room, since=page["data"]["messages"][2]["id"])
        got = await texts_arrive(client, 3, 2)
        assert [m["msg"] for m in got] == ["kept-4", "after"]
        await client.close()
