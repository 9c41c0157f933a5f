"""Rate limits: the token buckets (sans-I/O), the [api] policy, and the api app that applies them."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gochat_py.api.app import create_app
from gochat_py.api.ratelimit import (
    LOGIN,
    PUSH,
    REGISTER,
    ApiLimits,
    address_key,
    client_address,
    is_loopback,
    too_many_requests,
)
from gochat_py.config import ApiSettings
from gochat_py.rpc import logic_pb2 as pb
from gochat_py.token_buckets import TokenBuckets

# -- TokenBuckets ---------------------------------------------------------------------------


def test_a_burst_then_the_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert buckets.take("a", 0.25) == pytest.approx(0.25)
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 0.5) == pytest.approx(0.5)


def test_refused_requests_cost_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    for _ in range(100):
        assert buckets.take("a", 0.5) == pytest.approx(0.5)
    assert buckets.take("a", 1.0) == 0.0


def test_keys_are_independent() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0
    assert buckets.take("b", 0.0) == 0.0


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    buckets = TokenBuckets(rate=10.0, burst=2)
    buckets.take("a", 0.0)
    assert buckets.take("a", 1000.0) == 0.0
    assert buckets.take("a", 1000.0) == 0.0
    assert buckets.take("a", 1000.0) == pytest.approx(0.1)


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1)
    assert all(buckets.take("a", 0.0) == 0.0 for _ in range(1000))
    assert len(buckets) == 0


def test_a_clock_that_goes_back_adds_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    buckets.take("a", 10.0)
    assert buckets.take("a", 5.0) == pytest.approx(1.0)


def test_full_buckets_are_forgotten() -> None:
    buckets = TokenBuckets(rate=1.0, burst=2)
    for n in range(1000):
        buckets.take(f"k{n}", 0.0)
    assert len(buckets) == 1000
    buckets.take("late", 10.0)  # everyone else is full again by now
    assert len(buckets) == 1


def test_memory_is_bounded_by_max_keys() -> None:
    buckets = TokenBuckets(rate=0.001, burst=1, max_keys=100)
    for n in range(10_000):
        buckets.take(f"k{n}", 0.0)
    assert len(buckets) == 100
    assert buckets.take("k9999", 0.0) > 0  # the most recent keys are kept


# -- addresses ------------------------------------------------------------------------------


def test_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.5.6.7")
    assert is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert is_loopback("")  # a Unix socket has no address
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("2001:db8::1")


def test_ipv6_clients_count_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("203.0.113.9") == "203.0.113.9"


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert client_address("203.0.113.5", ["198.51.100.1"], proxies) == "203.0.113.5"
    assert client_address("10.1.1.1", ["198.51.100.1"], proxies) == "198.51.100.1"
    assert client_address("::1", ["198.51.100.1"], proxies) == "198.51.100.1"
    # the nearest hop that is not a proxy; what the client itself wrote further left is not believed
    assert client_address("10.1.1.1", ["1.2.3.4, 198.51.100.1, 10.2.2.2"], proxies) == "198.51.100.1"
    assert client_address("10.1.1.1", ["1.2.3.4", "198.51.100.1"], proxies) == "198.51.100.1"
    assert client_address("10.1.1.1", [], proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", ["garbage"], proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", ["198.51.100.1"], ()) == "10.1.1.1"
    assert client_address("::ffff:203.0.113.5", [], ()) == "203.0.113.5"


def test_the_message() -> None:
    assert too_many_requests(0.01) == "too many requests, try again in 1 s"
    assert too_many_requests(1.0) == "too many requests, try again in 1 s"
    assert too_many_requests(1.2) == "too many requests, try again in 2 s"
    assert too_many_requests(20.0) == "too many requests, try again in 20 s"


# -- the [api] policy -----------------------------------------------------------------------


def test_defaults_let_a_local_benchmark_through() -> None:
    """500 users registered from loopback at once, then thousands of pushes: nothing refused."""
    limits = ApiLimits(ApiSettings())
    for address in ("127.0.0.1", "::1"):
        assert not any(limits.address_wait(REGISTER, address, 0.0) for _ in range(500))
        assert not any(limits.address_wait(LOGIN, address, 0.0) for _ in range(500))
        assert not any(limits.address_wait(PUSH, address, 0.0) for _ in range(10_000))
    assert limits.exempt("127.0.0.1")


def test_defaults_stop_a_flood_from_elsewhere() -> None:
    limits = ApiLimits(ApiSettings())
    remote = "203.0.113.7"
    assert not limits.exempt(remote)
    registered = sum(limits.address_wait(REGISTER, remote, 0.0) == 0 for _ in range(500))
    assert registered == ApiSettings().register_address_burst
    pushes = sum(limits.address_wait(PUSH, remote, 0.0) == 0 for _ in range(10_000))
    assert pushes == ApiSettings().push_address_burst
    token_pushes = sum(limits.user_wait(PUSH, "token", 0.0) == 0 for _ in range(1000))
    assert token_pushes == ApiSettings().push_user_burst
    guesses = sum(limits.user_wait(LOGIN, "ann", 0.0) == 0 for _ in range(1000))
    assert guesses == ApiSettings().login_user_burst
    assert limits.user_wait(REGISTER, "ann", 0.0) == 0.0  # no per-user limit on register


def test_loopback_can_be_limited_too() -> None:
    limits = ApiLimits(ApiSettings(rate_limit_loopback=True, register_address_burst=2))
    assert not limits.exempt("127.0.0.1")
    assert [limits.address_wait(REGISTER, "127.0.0.1", 0.0) > 0 for _ in range(3)] == [False, False, True]


def test_long_user_keys_are_digested() -> None:
    limits = ApiLimits(ApiSettings(push_user_burst=1))
    long_token = "x" * 60_000
    assert limits.user_wait(PUSH, long_token, 0.0) == 0.0
    assert limits.user_wait(PUSH, long_token, 0.0) > 0
    assert all(len(key) < 100 for key in limits.by_user[PUSH]._buckets)


def test_settings_from_the_environment() -> None:
    from gochat_py.config import load_settings

    settings = load_settings(
        env="dev",
        environ={
            "GOCHAT_API__RATE_LIMIT_LOOPBACK": "true",
            "GOCHAT_API__TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8",
            "GOCHAT_API__PUSH_USER_RATE": "0",
            "GOCHAT_API__MAX_MESSAGE_LENGTH": "10",
        },
    )
    assert settings.api.rate_limit_loopback is True
    assert settings.api.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert settings.api.push_user_rate == 0
    assert settings.api.max_message_length == 10
    assert load_settings(env="prod", environ={}).api.max_message_length == 4096


# -- through the app ------------------------------------------------------------------------


class FakeLogic:
    """Logic that knows one token and accepts every push."""

    auth_timeout = 10.0

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, method: str, message: Any, timeout: float | None = None) -> Any:
        if method == "PushBatch":
            items = [getattr(item, item.WhichOneof("kind")) for item in message.items]
            return pb.PushBatchReply(replies=[await self.call("PushRoom", item) for item in items])
        self.calls.append(method)
        if method in ("Login", "Register"):
            return pb.AuthReply(code=pb.OK, auth_token="t" * 44)
        if method == "CheckAuth":
            if message.auth_token == "good":
                return pb.CheckAuthReply(code=pb.OK, user_id=1, user_name="ann")
            return pb.CheckAuthReply(code=pb.FAIL, message="auth fail")
        if getattr(message, "auth_token", "") != "good":
            return pb.Reply(code=pb.SESSION_ERROR, message="Session error")
        return pb.Reply(code=pb.OK)


async def _client(settings: ApiSettings) -> tuple[TestClient, FakeLogic]:
    logic = FakeLogic()
    client = TestClient(TestServer(create_app(logic, settings)))  # type: ignore[arg-type]
    await client.start_server()
    return client, logic


async def _post(client: TestClient, path: str, body: Any, **headers: str) -> dict[str, Any]:
    response = await client.post(path, data=json.dumps(body), headers=headers)
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    return await response.json()


async def test_the_app_refuses_with_code_1_and_a_message() -> None:
    settings = ApiSettings(rate_limit_loopback=True, register_address_burst=2, register_address_rate=0.5)
    client, logic = await _client(settings)
    try:
        body = {"userName": "ann", "passWord": "pw"}
        assert (await _post(client, "/user/register", body))["code"] == 0
        assert (await _post(client, "/user/register", body))["code"] == 0
        refused = await _post(client, "/user/register", body)
        assert refused == {"code": 1, "data": None, "message": "too many requests, try again in 2 s"}
        assert logic.calls == ["Register", "Register"]  # a refused request never reaches logic
        # other routes have their own buckets
        assert (await _post(client, "/user/login", body))["code"] == 0
    finally:
        await client.close()


async def test_the_app_limits_push_per_token_across_addresses() -> None:
    settings = ApiSettings(
        rate_limit_loopback=True, trusted_proxies=["127.0.0.1"], push_user_burst=3, push_user_rate=0.001
    )
    client, _logic = await _client(settings)
    try:
        body = {"authToken": "good", "msg": "hi", "roomId": 1}
        for n in range(3):
            reply = await _post(client, "/push/pushRoom", body, **{"X-Forwarded-For": f"198.51.100.{n}"})
            assert reply["code"] == 0, reply
        refused = await _post(client, "/push/count", body, **{"X-Forwarded-For": "198.51.100.99"})
        assert refused["code"] == 1 and refused["message"].startswith("too many requests, try again in ")
        # another token is not held up
        other = await _post(client, "/push/pushRoom", {**body, "authToken": "bad"})
        assert other == {"code": 40000, "data": None, "message": "Session error"}
    finally:
        await client.close()


async def test_the_app_limits_logins_per_user_name() -> None:
    settings = ApiSettings(rate_limit_loopback=True, login_user_burst=2, login_user_rate=0.001)
    client, _logic = await _client(settings)
    try:
        for _ in range(2):
            assert (await _post(client, "/user/login", {"userName": "ann", "passWord": "x"}))["code"] == 0
        assert (await _post(client, "/user/login", {"userName": "ann", "passWord": "x"}))["code"] == 1
        assert (await _post(client, "/user/login", {"userName": "bob", "passWord": "x"}))["code"] == 0
    finally:
        await client.close()


async def test_loopback_is_not_limited_by_default() -> None:
    client, logic = await _client(ApiSettings())
    try:
        for _ in range(300):
            reply = await _post(client, "/push/pushRoom", {"authToken": "good", "msg": "hi", "roomId": 1})
            assert reply["code"] == 0
        assert logic.calls.count("PushRoom") == 300
    finally:
        await client.close()


async def test_the_app_refuses_messages_over_the_limit() -> None:
    client, logic = await _client(ApiSettings(max_message_length=5))
    try:
        assert (await _post(client, "/push/pushRoom", {"authToken": "good", "msg": "ééééé", "roomId": 1}))["code"] == 0
        too_long = await _post(client, "/push/pushRoom", {"authToken": "good", "msg": "éééééé", "roomId": 1})
        assert too_long == {"code": 1, "data": None, "message": "msg is too long: 6 characters, at most 5 are allowed"}
        private = await _post(
            client, "/push/push", {"authToken": "good", "msg": "123456", "toUserId": "2", "roomId": 1}
        )
        assert private["message"] == "msg is too long: 6 characters, at most 5 are allowed"
        # an unknown token is still reported first, as for every other bad body
        bad_token = await _post(client, "/push/pushRoom", {"authToken": "bad", "msg": "123456", "roomId": 1})
        assert bad_token == {"code": 40000, "data": None, "message": "Session error"}
        assert logic.calls.count("PushRoom") == 1
    finally:
        await client.close()
