"""The whole system through its public interfaces: HTTP API and websockets, real processes."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest

from tests.e2e.harness import CREATE_TIME, ApiClient, Cluster, WsClient, free_port, op_is

SESSION_ERROR = {"code": 40000, "data": None, "message": "Session error"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_room() -> int:
    return random.randint(1000, 10**9)


async def test_register_login_and_the_original_error_messages(db_cluster: Cluster) -> None:
    async with ApiClient(db_cluster.api_url) as api:
        alice, bob = unique("alice"), unique("bob")
        token_a = await api.register(alice, "secret-a")
        assert len(token_a) == 44 and token_a.endswith("=")
        await api.register(bob, "secret-b")

        login = await api.post("/user/login", {"userName": alice, "passWord": "secret-a"})
        assert login["code"] == 0 and login["message"] == "login success" and len(login["data"]) == 44

        bad_login = {"code": 1, "data": None, "message": "no this user or password error!"}
        assert await api.post("/user/login", {"userName": alice, "passWord": "wrong"}) == bad_login
        assert await api.post("/user/login", {"userName": unique("nobody"), "passWord": "x"}) == bad_login

        duplicate = await api.post("/user/register", {"userName": bob, "passWord": "other"})
        assert duplicate == {
            "code": 1,
            "data": None,
            "message": "this user name already have , please login !!!",
        }

        too_long = await api.post("/user/register", {"userName": "n" * 65, "passWord": "x"})
        assert too_long == {
            "code": 1,
            "data": None,
            "message": "userName is too long: 65 characters, at most 64 are allowed",
        }
        longest = ("l" + uuid.uuid4().hex * 2)[:64]
        assert len(await api.register(longest, "x")) == 44

        missing = await api.post("/user/login", {})
        assert missing == {
            "code": 1,
            "data": None,
            "message": (
                "Key: 'FormLogin.UserName' Error:Field validation for 'UserName' failed on the 'required' tag\n"
                "Key: 'FormLogin.Password' Error:Field validation for 'Password' failed on the 'required' tag"
            ),
        }
        missing_password = await api.post("/user/register", {"userName": "x"})
        assert missing_password["message"] == (
            "Key: 'FormRegister.Password' Error:Field validation for 'Password' failed on the 'required' tag"
        )

        wrong_type = await api.post("/user/login", {"userName": 5, "passWord": "x"})
        assert wrong_type == {
            "code": 1,
            "data": None,
            "message": "json: cannot unmarshal number into Go struct field FormLogin.userName of type string",
        }
        status, malformed, _ = await api.post_raw("/user/login", b"ugly")
        assert status == 200
        assert malformed["message"] == "invalid character 'u' looking for beginning of value"
        status, empty, _ = await api.post_raw("/user/login", b"")
        assert empty == {"code": 1, "data": None, "message": "EOF"}

        token = login["data"]  # the login replaced the register session (single session per user)
        assert await api.post("/user/checkAuth", {"authToken": token_a}) == SESSION_ERROR
        room_type = await api.post("/push/pushRoom", {"authToken": token, "msg": "m", "roomId": "1"})
        assert room_type["message"] == (
            "json: cannot unmarshal string into Go struct field FormRoom.roomId of type int"
        )
        to_type = await api.post("/push/push", {"authToken": token, "msg": "m", "toUserId": 2, "roomId": 1})
        assert to_type["message"] == (
            "json: cannot unmarshal number into Go struct field FormPush.toUserId of type string"
        )

        assert await api.post("/user/checkAuth", {"authToken": "not-a-token"}) == SESSION_ERROR
        assert await api.post("/push/pushRoom", {"authToken": "nope", "msg": "m", "roomId": 1}) == SESSION_ERROR
        assert await api.post("/push/count", {"roomId": 1}) == SESSION_ERROR

        check = await api.post("/user/checkAuth", {"authToken": login["data"]})
        assert check["code"] == 0 and check["message"] == "auth success"
        assert check["data"]["userName"] == alice and check["data"]["userId"] > 0
        # a second login ends the first login's session (single session per user)
        again = (await api.post("/user/login", {"userName": alice, "passWord": "secret-a"}))["data"]
        assert await api.post("/user/checkAuth", {"authToken": login["data"]}) == SESSION_ERROR
        assert (await api.post("/user/checkAuth", {"authToken": again}))["code"] == 0


async def test_cors_preflight_and_unknown_routes(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        assert api._session
        async with api._session.options(
            cluster.api_url + "/user/login",
            headers={"Origin": "http://elsewhere:8080", "Access-Control-Request-Method": "POST"},
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Access-Control-Allow-Headers"] == "Origin, X-Requested-With, Content-Type, Accept"
            assert response.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS, POST, PUT, DELETE"
        not_found = {"code": 1, "data": None, "message": "please check request url !"}
        async with api._session.get(cluster.api_url + "/user/login") as response:
            assert response.status == 200
            assert await response.json() == not_found
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await api.post("/no/such/route", {}) == not_found


async def test_room_private_count_and_room_info_frames(db_cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(db_cluster.api_url) as api:
        alice, bob = unique("alice"), unique("bob")
        token_a, token_b = await api.register(alice), await api.register(bob)
        id_a, id_b = await api.user_id(token_a), await api.user_id(token_b)
        ws_a = await WsClient(db_cluster.ws_url).join(token_a, room)
        ws_b = await WsClient(db_cluster.ws_url).join(token_b, room)
        try:
            # both joined: the join broadcast (op 5) lists both members
            members = {str(id_a): alice, str(id_b): bob}
            await ws_a.next_frame(op_is(5, roomUserInfo=members))
            await ws_b.next_frame(op_is(5, roomUserInfo=members))

            reply = await api.post("/push/pushRoom", {"authToken": token_a, "msg": "hello <b> & é", "roomId": room})
            assert reply == {"code": 0, "data": "", "message": "ok"}
            prefix = (
                '{"code":0,"msg":"hello \\u003cb\\u003e \\u0026 é",'
                f'"fromUserId":{id_a},"fromUserName":"{alice}","toUserId":0,"toUserName":"",'
                f'"roomId":{room},"op":3,'
            ).encode()
            for ws in (ws_a, ws_b):  # the sender gets its own room message too
                frame = await ws.next_frame(op_is(3))
                assert frame.startswith(prefix), frame
                assert CREATE_TIME.search(frame), frame

            reply = await api.post(
                "/push/push", {"authToken": token_a, "msg": "psst", "toUserId": str(id_b), "roomId": room}
            )
            assert reply == {"code": 0, "data": None, "message": "ok"}
            private = await ws_b.next_frame(op_is(2))
            assert (
                private
                == (
                    f'{{"code":0,"msg":"psst","fromUserId":{id_a},"fromUserName":"{alice}","toUserId":{id_b},'
                    f'"toUserName":"{bob}","roomId":{room},"op":2,"createTime":""}}'
                ).encode()
            )

            # only the target gets it: alice's next room frame comes with no op 2 before it
            await api.post("/push/pushRoom", {"authToken": token_b, "msg": "marker", "roomId": room})
            await ws_a.next_frame(op_is(3, msg="marker"))
            assert not any(json.loads(f).get("op") == 2 for f in ws_a.seen if f)

            assert await api.post("/push/count", {"authToken": token_a, "roomId": room}) == {
                "code": 0,
                "data": "",
                "message": "ok",
            }
            for ws in (ws_a, ws_b):
                assert await ws.next_frame(op_is(4)) == b'{"count":2,"op":4}'

            assert (await api.post("/push/getRoomInfo", {"authToken": token_b, "roomId": room}))["code"] == 0
            expected_members = ",".join(f'"{k}":"{v}"' for k, v in sorted(members.items()))
            expected = f'{{"op":5,"roomId":{room},"count":2,"roomUserInfo":{{{expected_members}}}}}'.encode()
            for ws in (ws_a, ws_b):
                assert await ws.next_frame(op_is(5)) == expected

            # a member leaving: the others get the new member list, not the original's empty frame
            await ws_b.close()
            left = await ws_a.next_frame(op_is(5))
            assert json.loads(left) == {
                "op": 5,
                "roomId": room,
                "count": 1,
                "roomUserInfo": {str(id_a): alice},
            }
        finally:
            await ws_a.close()
            await ws_b.close()

        empty_room = await api.post("/push/getRoomInfo", {"authToken": token_a, "roomId": new_room()})
        assert empty_room == {"code": 1, "data": None, "message": "rpc get room info fail!"}


async def test_logout_invalidates_the_token(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("carol"))
        assert await api.post("/user/logout", {"authToken": token}) == {
            "code": 0,
            "data": None,
            "message": "logout ok!",
        }
        assert await api.post("/user/checkAuth", {"authToken": token}) == SESSION_ERROR
        assert await api.post("/push/pushRoom", {"authToken": token, "msg": "x", "roomId": 1}) == SESSION_ERROR
        assert await api.post("/user/logout", {"authToken": token}) == SESSION_ERROR


async def test_websocket_refuses_bad_joins_and_keeps_serving(cluster: Cluster) -> None:
    import websockets

    for join in (b"not json", json.dumps({"authToken": "unknown", "roomId": 1}), json.dumps({"roomId": 1})):
        async with websockets.connect(cluster.ws_url) as ws:
            await ws.send(join)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with websockets.connect(cluster.ws_url) as ws:
        await ws.send("x" * 600)  # over the 512-byte inbound limit
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with pytest.raises(websockets.InvalidStatus) as wrong_path:
        await websockets.connect(cluster.ws_url.replace("/ws", "/debug/pprof/"))
    assert wrong_path.value.response.status_code == 404

    # the node still serves everyone else
    async with ApiClient(cluster.api_url) as api:
        room = new_room()
        token = await api.register(unique("dave"))
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5, count=1))  # joined: a push sent before that would never reach it
        await api.post("/push/pushRoom", {"authToken": token, "msg": "still here", "roomId": room})
        await ws.next_frame(op_is(3, msg="still here"))
        await ws.close()


async def test_private_message_to_offline_or_unknown_user_breaks_nothing(cluster: Cluster) -> None:
    room = new_room()
    async with ApiClient(cluster.api_url) as api:
        token_a, token_off = await api.register(unique("erin")), await api.register(unique("offline"))
        offline_id = await api.user_id(token_off)
        ws_a = await WsClient(cluster.ws_url).join(token_a, room)
        try:
            for target in (str(offline_id), "999999999"):
                reply = await api.post(
                    "/push/push", {"authToken": token_a, "msg": "anyone?", "toUserId": target, "roomId": room}
                )
                assert reply == {"code": 0, "data": None, "message": "ok"}
            not_numeric = await api.post(
                "/push/push", {"authToken": token_a, "msg": "x", "toUserId": "abc", "roomId": room}
            )
            assert not_numeric["code"] == 1 and "toUserId" in not_numeric["message"]
            for n in range(5):
                await api.post("/push/pushRoom", {"authToken": token_a, "msg": f"after {n}", "roomId": room})
            for n in range(5):
                await ws_a.next_frame(op_is(3, msg=f"after {n}"))
        finally:
            await ws_a.close()
    assert all(p.running() for p in cluster.system.modules), cluster.tails()


async def test_a_second_connect_node_joins_and_leaves(cluster: Cluster) -> None:
    room = new_room()
    second_port = free_port()
    second = cluster.start_module(
        "connect_websocket",
        name="connect_websocket_2",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{second_port}",
        GOCHAT_CONNECT_WEBSOCKET__SERVER_ID="ws-second",
    )
    async with ApiClient(cluster.api_url) as api:
        name_1 = unique("frank")
        token_1, token_2 = await api.register(name_1), await api.register(unique("grace"))
        id_1, id_2 = await api.user_id(token_1), await api.user_id(token_2)
        on_first = await WsClient(cluster.ws_url).join(token_1, room)
        on_second = await WsClient(f"ws://127.0.0.1:{second_port}/ws").join(token_2, room)
        try:
            await on_first.next_frame(op_is(5, count=2))
            await api.post("/push/pushRoom", {"authToken": token_1, "msg": "across nodes", "roomId": room})
            for ws in (on_first, on_second):
                await ws.next_frame(op_is(3, msg="across nodes"))
            reply = await api.post(
                "/push/push",
                {"authToken": token_1, "msg": "to node 2", "toUserId": str(id_2), "roomId": room},
            )
            assert reply["code"] == 0
            await on_second.next_frame(op_is(2, msg="to node 2"))

            assert second.stop() == 0  # clean exit on SIGTERM
            assert on_second.ws is not None
            await asyncio.wait_for(on_second.ws.wait_closed(), 10)
            assert on_second.ws.close_code == 1001  # "going away": reconnect elsewhere
            left = await on_first.next_frame(op_is(5, count=1))
            assert json.loads(left)["roomUserInfo"] == {str(id_1): name_1}
            await api.post("/push/pushRoom", {"authToken": token_1, "msg": "after node 2", "roomId": room})
            await on_first.next_frame(op_is(3, msg="after node 2"))
        finally:
            await on_first.close()
            await on_second.close()
