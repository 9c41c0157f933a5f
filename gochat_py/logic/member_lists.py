"""Member-list (op 5) broadcasts, coalesced per room.

Every join and leave, and every getRoomInfo, asks for the room's member list to be sent to the
room.  Sent one by one, N users joining a room at once would cost N²/2 frames (half a million for
a thousand users, each frame listing up to a thousand names).  Requests for a room are therefore
gathered for ``delay`` seconds and answered with one broadcast of the list as it is then.  Rooms
larger than ``auto_limit`` get no automatic lists on joins and leaves (a list of ten thousand names
to ten thousand sockets per join is no use to anyone); an explicit getRoomInfo is always answered,
as in the original.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from gochat_py.logic.sessions import SessionStore
from gochat_py.logs import kv
from gochat_py.protocol.frames import OP_ROOM_INFO_SEND
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue

log = logging.getLogger("gochat.logic.members")


class MemberLists:
    def __init__(self, sessions: SessionStore, queue: MessageQueue, delay: float, auto_limit: int) -> None:
        self.sessions = sessions
        self.queue = queue
        self.delay = delay
        self.auto_limit = auto_limit
        self._pending: dict[int, bool] = {}  # room -> an explicit request is among those gathered
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, room_id: int, explicit: bool = False) -> None:
        if room_id in self._pending:
            self._pending[room_id] |= explicit
            return
        self._pending[room_id] = explicit
        task = asyncio.get_running_loop().create_task(self._send_later(room_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_later(self, room_id: int) -> None:
        await asyncio.sleep(self.delay)
        explicit = self._pending.pop(room_id, False)
        try:
            # The size first, in the same script: fetching a big room's list only to drop it cost
            # logic most of a core while 50,000 sockets joined one room (a list of every member,
            # five times a second).
            if explicit:
                members: dict[str, str] | None = await self.sessions.members(room_id)
            else:
                members = await self.sessions.members_up_to(room_id, self.auto_limit)
            if not members:
                return
            await self.queue.enqueue(
                QueueMessage(op=OP_ROOM_INFO_SEND, room_id=room_id, count=len(members), room_user_info=members)
            )
        except RedisError as exc:
            log.warning("member list not sent", extra=kv(room_id=room_id, error=repr(exc)))

    async def close(self) -> None:
        """Sends what is still gathered (a clean stop loses nothing), then stops."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.delay + 5)
