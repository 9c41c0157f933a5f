"""The HTTP api as the benchmark calls it: JSON bodies, ``{"code","data","message"}`` envelopes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from gochat_py.bench.http_client import HttpClient
from gochat_py.bench.progress import Progress

PASSWORD = "bench-pw-1"


class ApiError(RuntimeError):
    pass


class Api:
    def __init__(self, base_url: str, connections: int = 100, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self.timeout = timeout
        self.client: HttpClient | None = None

    async def __aenter__(self) -> Api:
        self.client = HttpClient(self.base_url, self.connections, self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client:
            await self.client.close()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.client is not None
        status, raw = await self.client.post(path, orjson.dumps(body))
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(f"{path}: HTTP {status}, not JSON: {raw[:200]!r}") from None
        if not isinstance(reply, dict) or "code" not in reply:
            raise ApiError(f"{path}: unexpected reply {raw[:200]!r}")
        return reply

    async def register(self, name: str) -> str:
        reply = await self.post("/user/register", {"userName": name, "passWord": PASSWORD})
        if reply["code"] != 0:
            # a rerun with the same --run-id finds its users already there
            reply = await self.post("/user/login", {"userName": name, "passWord": PASSWORD})
        if reply["code"] != 0 or not isinstance(reply.get("data"), str):
            raise ApiError(f"register {name}: {reply.get('message')!r}")
        return reply["data"]

    async def user_id(self, token: str) -> int:
        reply = await self.post("/user/checkAuth", {"authToken": token})
        if reply["code"] != 0:
            raise ApiError(f"checkAuth: {reply.get('message')!r}")
        return int(reply["data"]["userId"])

    async def push_room(self, token: str, room_id: int, msg: str) -> dict[str, Any]:
        return await self.post("/push/pushRoom", {"authToken": token, "roomId": room_id, "msg": msg})

    async def push(self, token: str, to_user_id: int, room_id: int, msg: str) -> dict[str, Any]:
        body = {"authToken": token, "toUserId": str(to_user_id), "roomId": room_id, "msg": msg}
        return await self.post("/push/push", body)


async def bounded_map(limit: int, items: list[Any], work: Any) -> list[Any]:
    """``work(item)`` for every item with at most ``limit`` in flight; results in item order.
    The first failure is raised once the others are cancelled: against a server that is not
    there, the run ends with one error, not a traceback per item at exit."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        async with semaphore:
            return await work(item)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def register_users(
    api: Api, names: list[str], concurrency: int, remaining: Callable[[], float], progress: Progress
) -> list[str]:
    """Registers every name (at most ``concurrency`` at once, each within the run's time left)
    and returns the tokens in order, showing progress."""
    done = 0

    async def one(name: str) -> str:
        nonlocal done
        token = await asyncio.wait_for(api.register(name), remaining() or 0.01)
        done += 1
        progress.update("register", done, len(names))
        return token

    tokens = await bounded_map(concurrency, names, one)
    progress.update("register", done, len(names), force=True)
    return tokens
