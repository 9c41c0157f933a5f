"""The push batcher (api and connect nodes): requests of one loop turn share a call, and every request is answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc.client import RpcError
from gochat_py.rpc.push_batcher import PushBatcher


class Logic:
    """Stands in for the logic client: records each batch and answers per item."""

    def __init__(self, fail: Exception | None = None, short: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail
        self.short = short

    async def call(self, method: str, message: Any, timeout: float | None = None) -> Any:
        assert method == "PushBatch"
        self.batches.append(len(message.items))
        if self.fail:
            raise self.fail
        replies = [pb.Reply(code=pb.OK, message=item.push_room.msg) for item in message.items]
        return pb.PushBatchReply(replies=replies[:-1] if self.short else replies)


def room(msg: str) -> pb.PushItem:
    return pb.PushItem(push_room=pb.PushRoomRequest(room_id=1, msg=msg))


async def test_requests_of_one_turn_go_in_one_call_and_get_their_own_reply() -> None:
    logic = Logic()
    batcher = PushBatcher(logic, max_batch=4)  # type: ignore[arg-type]
    replies = await asyncio.gather(*(batcher.submit(room(str(n))) for n in range(10)))
    assert [r.message for r in replies] == [str(n) for n in range(10)]
    assert logic.batches == [4, 4, 2]
    assert (await batcher.submit(room("alone"))).message == "alone"
    assert logic.batches[-1] == 1


@pytest.mark.parametrize("logic", [Logic(fail=RpcError("down")), Logic(fail=ValueError("bug")), Logic(short=True)])
async def test_a_failed_batch_fails_every_request_in_it_and_hangs_none(logic: Logic) -> None:
    batcher = PushBatcher(logic)  # type: ignore[arg-type]
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(room(str(n))) for n in range(3)), return_exceptions=True), 5
    )
    assert all(isinstance(r, RpcError) for r in results)


class SlowLogic(Logic):
    """Answers only when told to, so the test decides what is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def call(self, method: str, message: Any, timeout: float | None = None) -> Any:
        self.batches.append(len(message.items))
        await self.release.wait()
        return pb.PushBatchReply(replies=[pb.Reply(code=pb.OK, message=i.push_room.msg) for i in message.items])


async def test_pushes_arriving_while_batches_are_in_flight_go_together_when_one_returns() -> None:
    logic = SlowLogic()
    batcher = PushBatcher(logic, max_batch=100, max_in_flight=2)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.submit(room("a")))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.submit(room("b")))
    await asyncio.sleep(0.01)
    assert logic.batches == [1, 1]  # alone, each went at once: nobody waits while logic is idle
    later = [asyncio.ensure_future(batcher.submit(room(f"c{n}"))) for n in range(30)]
    await asyncio.sleep(0.01)
    assert logic.batches == [1, 1]  # two calls in flight: the rest wait for one of them
    logic.release.set()
    replies = await asyncio.wait_for(asyncio.gather(first, second, *later), 5)
    assert [r.message for r in replies] == ["a", "b"] + [f"c{n}" for n in range(30)]
    assert logic.batches == [1, 1, 30]
