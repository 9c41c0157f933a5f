"""Reading kept messages: history pages and the backlog of a socket that joins.

Every read asks the hot store first (Redis, :mod:`gochat_py.storage.history`) and the database
(:mod:`gochat_py.storage.archive`) only for the part of the range the hot store does not cover:
older pages, conversations idle past the hot store's ttl, and everything after Redis lost its data.
Ranges are given as exclusive bounds on parsed ids, so the two stores' parts never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from gochat_py.protocol.frames import OP_ROOM_SEND, OP_SINGLE_SEND
from gochat_py.protocol.message_id import ZERO, parse_id
from gochat_py.storage.archive import Archive
from gochat_py.storage.history import Conversation, HotHistory, Key

GAP_UNKNOWN = "unknown"
GAP_TOO_OLD = "too_old"
MAX_SINCE_AHEAD_MS = 60_000  # a since this far past the queue's last id is not one of ours


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: list[tuple[str, int, bytes]]  # (id, op, body), oldest first
    gap: str = ""


class HistoryReader:
    def __init__(self, hot: HotHistory, archive: Archive, size: int) -> None:
        self.hot = hot
        self.archive = archive
        self.size = size

    async def newest(
        self, conversation: Conversation, below: Key | None, above: Key | None, count: int
    ) -> list[tuple[str, bytes]]:
        """Up to ``count`` messages with ids strictly between the bounds, newest first."""
        hot = await self.hot.newest(conversation, below, above, count)
        entries = hot.entries
        if len(entries) >= count:
            return entries
        # Older messages may be in the database only: below the hot store's floor (or anywhere,
        # when Redis holds nothing of the conversation).
        if hot.floor is None:
            cold_below = below
        elif hot.floor == ZERO or (above is not None and above >= hot.floor):
            return entries
        else:
            cold_below = hot.floor if below is None or hot.floor < below else below
        if entries:
            oldest = parse_id(entries[-1][0])
            if oldest is not None and (cold_below is None or oldest < cold_below):
                cold_below = oldest
        return entries + await self.archive.newest(conversation, cold_below, above, count - len(entries))

    async def page(
        self, conversation: Conversation, before: Key | None, limit: int
    ) -> tuple[list[tuple[str, bytes]], bool]:
        """A page of history, newest first, and whether older messages exist."""
        entries = await self.newest(conversation, before, None, limit + 1)
        return entries[:limit], len(entries) > limit

    async def backlog(
        self, since: str, queue_end: str, room_id: int, inbox_user: int, inbox_after: str | None
    ) -> Backlog:
        """What a joining socket missed, up to ``queue_end`` (inclusive), oldest first.

        ``since`` is the socket's (None: a v1 socket, which gets no room backlog); the room's
        messages after it, and the private messages to ``inbox_user`` after ``inbox_after``
        (None: none), at most ``size`` of each.  When ``since`` is not an id of ours, or more was
        missed than is kept, ``gap`` says so and the backlog holds the newest that is kept.
        """
        end = parse_id(queue_end) or ZERO
        below = (end[0], end[1] + 1)  # queue_end itself is included
        gap = ""
        after: Key | None = None
        if since is not None and since != "":
            after = known_id(since, queue_end)
            if after is None:
                gap = GAP_UNKNOWN
        merged: list[tuple[str, int, bytes]] = []
        if since is not None and since != "" and room_id > 0:
            room = await self.newest(Conversation.room(room_id), below, after, self.size + 1)
            if len(room) > self.size and not gap:
                gap = GAP_TOO_OLD
            merged += [(i, OP_ROOM_SEND, body) for i, body in room[: self.size]]
        if inbox_user > 0 and inbox_after is not None:
            inbox = await self.newest(Conversation.inbox(inbox_user), below, parse_id(inbox_after), self.size + 1)
            if len(inbox) > self.size and since and not gap:
                gap = GAP_TOO_OLD
            merged += [(i, OP_SINGLE_SEND, body) for i, body in inbox[: self.size]]
        merged.sort(key=lambda m: parse_id(m[0]) or ZERO)
        return Backlog(merged, gap)


def known_id(since: str, queue_end: str) -> Key | None:
    """``since`` as an id of ours, or None: not an id, or from the future (past the queue's last id,
    beyond what the clocks of several Redis restarts could explain)."""
    after = parse_id(since)
    end = parse_id(queue_end) or ZERO
    if after is None or after[0] > end[0] + MAX_SINCE_AHEAD_MS:
        return None
    return after


def inbox_start(since: str | None, was_offline: bool, cursor: str) -> str | None:
    """Where a joining socket's private backlog starts: an id, "" for the first kept, None for none.

    A socket that resumes gets the private messages after its ``since``, and only those: while it
    was open it got every private message to its user (they go to all of the user's sockets), so
    the ones before ``since`` are not owed, whatever the inbox cursor says (a node that died never
    reported what it delivered).  A user who had no socket open and joins without ``since`` gets
    the ones never delivered (after the inbox cursor, which is absent while no private message was
    sent to them).  A ``since`` that is not an id gets what is kept.
    """
    after = parse_id(since) if since else None
    if since and after is None:
        return ""
    if after is not None:
        return since
    delivered = parse_id(cursor) if was_offline else None
    return None if delivered is None else cursor
