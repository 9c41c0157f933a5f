"""Member-list broadcasts are gathered per room (fakes for Redis: this is pure scheduling logic)."""

from __future__ import annotations

import asyncio

from gochat_py.logic.member_lists import MemberLists
from gochat_py.protocol.queue_message import QueueMessage


class Rooms:
    def __init__(self, rooms: dict[int, dict[str, str]]) -> None:
        self.rooms = rooms
        self.lists_read = 0

    async def members(self, room_id: int) -> dict[str, str]:
        self.lists_read += 1
        return dict(self.rooms.get(room_id, {}))

    async def members_up_to(self, room_id: int, limit: int) -> dict[str, str] | None:
        if len(self.rooms.get(room_id, {})) > limit:
            return None  # as the store's script: a larger room's list is not read
        return await self.members(room_id)


class Queue:
    def __init__(self) -> None:
        self.sent: list[QueueMessage] = []

    async def enqueue(self, message: QueueMessage) -> str:
        self.sent.append(message)
        return str(len(self.sent))


def make(rooms: dict[int, dict[str, str]], auto_limit: int = 10) -> tuple[MemberLists, Queue]:
    queue = Queue()
    return MemberLists(Rooms(rooms), queue, delay=0.01, auto_limit=auto_limit), queue  # type: ignore[arg-type]


async def test_a_big_room_s_list_is_not_even_read_for_a_join() -> None:
    big = {str(n): f"user{n}" for n in range(11)}
    rooms = Rooms({1: big})
    lists = MemberLists(rooms, Queue(), delay=0.01, auto_limit=10)  # type: ignore[arg-type]
    lists.request(1)
    await lists.close()
    assert rooms.lists_read == 0
    lists.request(1, explicit=True)
    await lists.close()
    assert rooms.lists_read == 1


async def test_requests_for_a_room_within_the_delay_make_one_broadcast() -> None:
    lists, queue = make({1: {"1": "a", "2": "b"}, 2: {"3": "c"}})
    for _ in range(50):
        lists.request(1)
    lists.request(2)
    await lists.close()
    assert sorted((m.room_id, m.count) for m in queue.sent) == [(1, 2), (2, 1)]
    assert queue.sent[0].room_user_info == {"1": "a", "2": "b"}
    lists.request(1)  # a later request is a new broadcast
    await lists.close()
    assert len(queue.sent) == 3


async def test_empty_rooms_get_nothing() -> None:
    lists, queue = make({})
    lists.request(7, explicit=True)
    await lists.close()
    assert queue.sent == []


async def test_big_rooms_get_lists_only_when_asked() -> None:
    big = {str(n): f"user{n}" for n in range(11)}
    lists, queue = make({1: big}, auto_limit=10)
    lists.request(1)
    await lists.close()
    assert queue.sent == []
    lists.request(1)
    lists.request(1, explicit=True)
    await asyncio.wait_for(lists.close(), 5)
    assert [m.count for m in queue.sent] == [11]
