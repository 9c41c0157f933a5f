"""The Logic gRPC service: users, sessions, room state, and the entry of every message.

Replies carry ``code`` 0 or 1 and, on failure, the message the HTTP api shows (the original's
texts).  A store that is down (Redis, the database) is not the caller's fault: the call fails
with gRPC status UNAVAILABLE and a message naming the store, so callers report an outage rather
than, say, a bad token.  Nothing a caller sends can crash the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from gochat_py.logic.admission import Admission
from gochat_py.logic.history import HistoryReader, inbox_start, known_id
from gochat_py.logic.member_lists import MemberLists
from gochat_py.logic.passwords import Passwords
from gochat_py.logic.sessions import NO_ROOM, Joined, Session, SessionStore, inbox_cursor_key, user_nodes_key
from gochat_py.logic.users import DuplicateUserError, UserStore
from gochat_py.logs import kv
from gochat_py.protocol.frames import (
    OP_ROOM_COUNT_SEND,
    OP_ROOM_SEND,
    OP_SINGLE_SEND,
    Send,
)
from gochat_py.protocol.join import BAD_SINCE
from gochat_py.protocol.message_id import parse_id, with_id
from gochat_py.protocol.queue_message import OP_DISCONNECT_USER, OP_V2_EVENT, QueueMessage
from gochat_py.protocol.v2 import encode as encode_v2
from gochat_py.protocol.v2_messages import MemberJoined, MemberLeft, TypingEvent, User
from gochat_py.queue import MessageQueue, Outgoing
from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc import logic_pb2_grpc
from gochat_py.storage.history import Conversation

log = logging.getLogger("gochat.logic")

OK, FAIL, SESSION_ERROR = pb.OK, pb.FAIL, pb.SESSION_ERROR
NAME_CACHE_SIZE = 100_000
MSG_USER_EXISTS = "this user name already have , please login !!!"
MSG_BAD_LOGIN = "no this user or password error!"
MSG_EMPTY = "user_name or password empty!"
MAX_HISTORY_LIMIT = 100

ReplyT = TypeVar("ReplyT")


def describe_error(error: Exception) -> str:
    """An outage for logs and callers, without the request in it: SQLAlchemy's own text lists the
    statement's parameters (user names, password hashes), so only the driver's message is kept."""
    if isinstance(error, SQLAlchemyError):
        orig = getattr(error, "orig", None)
        return f"{type(error).__name__}: {orig}" if orig is not None else type(error).__name__
    return f"{type(error).__name__}: {error}"


def _guard(method: Callable[..., Awaitable[ReplyT]]) -> Callable[..., Awaitable[ReplyT]]:
    """Turns a store outage inside a method into an UNAVAILABLE status that says what is down."""

    @wraps(method)
    async def wrapper(self: LogicService, request: Any, context: grpc.aio.ServicerContext) -> ReplyT:
        try:
            return await method(self, request, context)
        except RedisError as exc:
            store, error = "redis", exc
        except (SQLAlchemyError, OSError) as exc:
            store, error = "database", exc
        detail = describe_error(error)
        log.warning("store unavailable", extra=kv(store=store, method=method.__name__, error=detail))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{store} unavailable: {detail}")
        raise AssertionError("unreachable: abort raises")

    return wrapper


def mid_key(user_id: int, mid: str) -> str:
    """A sender's client message id: while it exists, a push with that mid is not queued again."""
    return f"gochat_mid_{user_id}_{mid}"


def create_time() -> str:
    """``YYYY-MM-DD HH:MM:SS`` in this server's local time, as the original stamps room messages."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


class LogicService(logic_pb2_grpc.LogicServicer):
    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        queue: MessageQueue,
        passwords: Passwords,
        member_lists: MemberLists,
        admission: Admission | None = None,
        max_name_length: int = 64,
        history: HistoryReader | None = None,
    ):
        """``history``: kept messages are read from it (and written with every message); None =
        online-only delivery."""
        self.max_name_length = max_name_length
        self.history = history
        self.admission = admission or Admission(queue.group_state, max_backlog=0, max_wait=0)
        self.users = users
        self.sessions = sessions
        self.queue = queue
        self.passwords = passwords
        self.member_lists = member_lists
        # user id -> name; names never change, so a private message needs no database query
        self._names: OrderedDict[int, str] = OrderedDict()

    async def _user_name(self, user_id: int) -> str:
        """The user's name, or "" for no such user."""
        return (await self._user_names([user_id]))[user_id]

    async def _user_names(self, user_ids: list[int]) -> dict[int, str]:
        """Names by id ("" for no such user): the ones not cached yet in one query, so the first
        private messages to many users cost one database round trip, not one each."""
        missing = [uid for uid in user_ids if uid > 0 and uid not in self._names]
        if missing:
            for uid, name in (await self.users.names_of(missing)).items():
                self._names[uid] = name
            while len(self._names) > NAME_CACHE_SIZE:
                self._names.popitem(last=False)
        return {uid: self._names.get(uid, "") for uid in user_ids}

    # -- users and sessions ---------------------------------------------------------------

    @_guard
    async def Register(self, request: pb.AuthRequest, context: Any) -> pb.AuthReply:
        if not request.name or not request.password:
            return pb.AuthReply(code=FAIL, message=MSG_EMPTY)
        if len(request.name) > self.max_name_length:
            # every member list carries the name to every member of a room: keep it a name
            limit = self.max_name_length
            message = f"userName is too long: {len(request.name)} characters, at most {limit} are allowed"
            return pb.AuthReply(code=FAIL, message=message)
        if await self.users.by_name(request.name) is not None:
            return pb.AuthReply(code=FAIL, message=MSG_USER_EXISTS)
        hashed = await asyncio.to_thread(self.passwords.hash, request.password)
        try:
            user = await self.users.create(request.name, hashed)
        except DuplicateUserError:
            return pb.AuthReply(code=FAIL, message=MSG_USER_EXISTS)
        token = await self.sessions.login(user.id, user.name)
        log.info("user registered", extra=kv(user_id=user.id))
        return pb.AuthReply(code=OK, auth_token=token)

    @_guard
    async def Login(self, request: pb.AuthRequest, context: Any) -> pb.AuthReply:
        user = await self.users.by_name(request.name)
        if user is None:
            return pb.AuthReply(code=FAIL, message=MSG_BAD_LOGIN)
        matches, rehash = await asyncio.to_thread(self.passwords.verify, user.password, request.password)
        if not matches:
            return pb.AuthReply(code=FAIL, message=MSG_BAD_LOGIN)
        if rehash:
            await self.users.set_password(user.id, await asyncio.to_thread(self.passwords.hash, request.password))
        token = await self.sessions.login(user.id, user.name)
        return pb.AuthReply(code=OK, auth_token=token)

    @_guard
    async def CheckAuth(self, request: pb.CheckAuthRequest, context: Any) -> pb.CheckAuthReply:
        session = await self.sessions.check(request.auth_token)
        if session is None:
            return pb.CheckAuthReply(code=FAIL, message="auth fail")
        return pb.CheckAuthReply(code=OK, user_id=session.user_id, user_name=session.user_name)

    @_guard
    async def Logout(self, request: pb.LogoutRequest, context: Any) -> pb.Reply:
        session = await self.sessions.logout(request.auth_token)
        if session is None:
            return pb.Reply(code=FAIL, message="logout fail!")
        # the original left the user's sockets open after logout: close them on every node
        await self.queue.enqueue(QueueMessage(op=OP_DISCONNECT_USER, user_id=session.user_id))
        return pb.Reply(code=OK)

    @_guard
    async def GetUserInfo(self, request: pb.GetUserInfoRequest, context: Any) -> pb.GetUserInfoReply:
        name = await self._user_name(request.user_id)
        if not name:
            return pb.GetUserInfoReply(code=FAIL, message="no this user", user_id=request.user_id)
        return pb.GetUserInfoReply(code=OK, user_id=request.user_id, user_name=name)

    # -- messages ---------------------------------------------------------------------------

    @_guard
    async def Push(self, request: pb.PushRequest, context: Any) -> pb.Reply:
        return (await self._push_many([pb.PushItem(push=request)]))[0]

    @_guard
    async def PushRoom(self, request: pb.PushRoomRequest, context: Any) -> pb.Reply:
        return (await self._push_many([pb.PushItem(push_room=request)]))[0]

    @_guard
    async def PushBatch(self, request: pb.PushBatchRequest, context: Any) -> pb.PushBatchReply:
        return pb.PushBatchReply(replies=await self._push_many(list(request.items)))

    async def _push_many(self, items: list[pb.PushItem]) -> list[pb.Reply]:
        """Private and room messages onto the queue, with one Redis round trip per step however
        many there are: sessions, then the private targets' nodes, then the queue."""
        requests = [getattr(item, item.WhichOneof("kind") or "push_room") for item in items]
        tokens = list({r.auth_token for r in requests if r.auth_token})
        targets = list({r.to_user_id for r in requests if isinstance(r, pb.PushRequest)})
        # The targets' nodes are read by the command that queues each message (queue.Outgoing).
        sessions, _ = await self.sessions.senders_and_targets(tokens, [])
        names = await self._user_names(targets)
        stamp = create_time()
        keep = self.history is not None
        messages: list[Outgoing] = []
        replies: list[pb.Reply] = []
        queued: list[pb.Reply] = []  # the replies of the messages, which get their ids
        for request in requests:
            sender = (
                sessions.get(request.auth_token)
                if request.auth_token
                else Session(request.from_user_id, request.from_user_name)
            )
            if sender is None:
                replies.append(pb.Reply(code=SESSION_ERROR, message="Session error"))
                continue
            if isinstance(request, pb.PushRequest):
                body = Send(
                    msg=request.msg,
                    from_user_id=sender.user_id,
                    from_user_name=sender.user_name,
                    to_user_id=request.to_user_id,
                    to_user_name=names[request.to_user_id],
                    room_id=request.room_id,
                    op=OP_SINGLE_SEND,
                ).encode()
                stores = (Conversation.inbox(request.to_user_id), Conversation.pair(sender.user_id, request.to_user_id))
                # copied to the sender's other v2 sockets (not to one sending to itself: it is the
                # recipient already)
                echo = sender.user_id != request.to_user_id
                messages.append(
                    Outgoing(
                        QueueMessage(op=OP_SINGLE_SEND, user_id=request.to_user_id, msg=body),
                        holders_key=user_nodes_key(request.to_user_id),
                        keep_in=tuple(c.hot_key for c in stores) if keep else (),
                        body=body,
                        # a user with no cursor has never been sent one: a join needs no inbox read
                        mark_key=inbox_cursor_key(request.to_user_id) if keep else "",
                        mid_key=mid_key(sender.user_id, request.mid) if request.mid else "",
                        echo_key=user_nodes_key(sender.user_id) if echo else "",
                        echo_user=sender.user_id if echo else 0,
                        origin=request.origin if echo else "",
                    )
                )
            else:
                body = Send(
                    msg=request.msg,
                    from_user_id=sender.user_id,
                    from_user_name=sender.user_name,
                    room_id=request.room_id,
                    op=OP_ROOM_SEND,
                    create_time=stamp,
                ).encode()
                messages.append(
                    Outgoing(
                        QueueMessage(op=OP_ROOM_SEND, room_id=request.room_id, msg=body),
                        keep_in=(Conversation.room(request.room_id).hot_key,) if keep else (),
                        body=body,
                        mid_key=mid_key(sender.user_id, request.mid) if request.mid else "",
                    )
                )
            queued.append(pb.Reply(code=OK))
            replies.append(queued[-1])
        if messages:
            await self.admission.admit()
            # durable: with [redis] wait_replicas, accepted only once replicas hold the messages too
            state, ids = await self.queue.enqueue_with_ids(messages, cap=self.admission.cap, durable=True)
            self.admission.observe(state)
            for reply, message_id in zip(queued, ids, strict=True):
                reply.id = message_id
        return replies

    @_guard
    async def Count(self, request: pb.RoomRequest, context: Any) -> pb.Reply:
        if request.auth_token and await self.sessions.check(request.auth_token) is None:
            return pb.Reply(code=SESSION_ERROR, message="Session error")
        count = await self.sessions.online_count(request.room_id)
        await self.queue.enqueue(QueueMessage(op=OP_ROOM_COUNT_SEND, room_id=request.room_id, count=count))
        return pb.Reply(code=OK)

    @_guard
    async def GetRoomInfo(self, request: pb.RoomRequest, context: Any) -> pb.Reply:
        if request.auth_token and await self.sessions.check(request.auth_token) is None:
            return pb.Reply(code=SESSION_ERROR, message="Session error")
        if not await self.sessions.online_count(request.room_id):
            return pb.Reply(code=FAIL, message="getRoomInfo no this user")
        self.member_lists.request(request.room_id, explicit=True)
        return pb.Reply(code=OK)

    # -- sockets on connect nodes -----------------------------------------------------------

    @_guard
    async def Connect(self, request: pb.ConnectRequest, context: Any) -> pb.ConnectReply:
        token = request.auth_token
        joined: Joined | None = None
        # Usually one script: the token's user is known from an earlier check (the socket's
        # CheckAuth), and the join script checks the token itself.  Otherwise, or if it was not
        # that user's any more, the token is checked first and the join tried once more.
        session = self.sessions.known(token) if token else None
        for _ in range(2):
            if session is None:
                session = await self.sessions.check(token)
                if session is None:
                    return pb.ConnectReply(code=FAIL, message="auth fail")
            announce = b""
            if request.room_id > NO_ROOM:
                announce = self._presence(request.room_id, session.user_id, session.user_name, joined=True)
            joined = await self.sessions.connect_checked(
                token,
                session,
                request.room_id,
                request.server_id,
                announce,
                self.member_lists.auto_limit,
                members=request.subscribe,
            )
            if joined is not None:
                break
            session = None
        if joined is None or session is None:
            return pb.ConnectReply(code=FAIL, message="auth fail")
        if request.room_id > NO_ROOM:
            # The original broadcast nothing on join; the member list would go stale (§12.1.2).
            self.member_lists.request(request.room_id)
        reply = pb.ConnectReply(code=OK, user_id=session.user_id, user_name=session.user_name)
        if request.subscribe and joined.members is not None:
            reply.members.update(joined.members)
        if self.history is None:
            return reply
        since = request.since if request.resume else None
        if since and known_id(since, joined.queue_end) is None:
            since = BAD_SINCE  # every read below treats it as unknown, none sends it to Redis
        # a subscribe's backlog is the room's: the socket's private messages came after its hello
        start = None if request.subscribe else inbox_start(since, joined.was_offline, joined.inbox_cursor)
        if since is not None or start is not None:
            backlog = await self.history.backlog(since, joined.queue_end, request.room_id, session.user_id, start)
            reply.backlog.extend(pb.StoredMessage(id=i, op=op, body=body) for i, op, body in backlog.messages)
            reply.gap = backlog.gap
        reply.backlog_end = joined.queue_end
        return reply

    @_guard
    async def Disconnect(self, request: pb.DisconnectRequest, context: Any) -> pb.Reply:
        announce = b""
        if request.room_id > NO_ROOM:
            announce = await self._leave_announcement(request.room_id, request.user_id)
        left = await self.sessions.disconnect(
            request.user_id,
            request.room_id,
            request.server_id,
            last_private_id=request.last_private_id,
            announce=announce,
            announce_limit=self.member_lists.auto_limit,
        )
        if left == 0 and request.room_id > NO_ROOM:
            # An op-5 member list instead of the original's empty frame (§12.1.1).
            self.member_lists.request(request.room_id)
        return pb.Reply(code=OK)

    async def _leave_announcement(self, room_id: int, user_id: int) -> bytes:
        """The leave event names the user; while the database is down the name may be unknown,
        and the event goes out without it: failing the Disconnect instead would leave the closed
        socket counted in the room and the node in the user's routes."""
        try:
            name = await self._user_name(user_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("leave announced without a name", extra=kv(user_id=user_id, error=describe_error(exc)))
            name = ""
        return self._presence(room_id, user_id, name, joined=False)

    @staticmethod
    def _presence(room_id: int, user_id: int, user_name: str, joined: bool) -> bytes:
        """The queue entry of a join or leave event for the room's v2 sockets; the session store
        queues it with the change itself, for rooms of up to the member-list limit (larger ones get
        no automatic member lists either: every join would be a frame to every member)."""
        user = User(id=user_id, name=user_name)
        event = MemberJoined(room=room_id, user=user) if joined else MemberLeft(room=room_id, user=user)
        return QueueMessage(op=OP_V2_EVENT, room_id=room_id, msg=encode_v2(event)).encode()

    @_guard
    async def Presence(self, request: pb.RoomRequest, context: Any) -> pb.PresenceReply:
        if await self.sessions.check(request.auth_token) is None:
            return pb.PresenceReply(code=SESSION_ERROR, message="Session error")
        return pb.PresenceReply(code=OK, members=await self.sessions.members(request.room_id))

    @_guard
    async def Typing(self, request: pb.TypingRequest, context: Any) -> pb.Reply:
        session = await self.sessions.check(request.auth_token)
        if session is None:
            return pb.Reply(code=SESSION_ERROR, message="Session error")
        if (request.room_id > 0) == (request.to_user_id > 0):
            return pb.Reply(code=FAIL, message="give either a room or a user, a positive integer")
        sender = User(id=session.user_id, name=session.user_name)
        if request.room_id > 0:
            body = encode_v2(TypingEvent(room=request.room_id, sender=sender))
            await self.queue.enqueue(QueueMessage(op=OP_V2_EVENT, room_id=request.room_id, msg=body))
        else:
            body = encode_v2(TypingEvent(user=session.user_id, sender=sender))
            message = QueueMessage(op=OP_V2_EVENT, user_id=request.to_user_id, msg=body)
            await self.queue.enqueue_many([Outgoing(message, holders_key=user_nodes_key(request.to_user_id))])
        return pb.Reply(code=OK)

    @_guard
    async def CheckSessions(self, request: pb.CheckSessionsRequest, context: Any) -> pb.CheckSessionsReply:
        tokens = list(request.auth_tokens)
        sessions, _ = await self.sessions.senders_and_targets(list(set(tokens)), [])
        return pb.CheckSessionsReply(live=[sessions.get(token) is not None for token in tokens])

    @_guard
    async def History(self, request: pb.HistoryRequest, context: Any) -> pb.HistoryReply:
        session = await self.sessions.check(request.auth_token)
        if session is None:
            return pb.HistoryReply(code=SESSION_ERROR, message="Session error")
        if self.history is None:
            return pb.HistoryReply(code=FAIL, message="history is turned off on this server")
        if (request.room_id > 0) == (request.user_id > 0):
            return pb.HistoryReply(code=FAIL, message="give either a roomId or a userId, a positive integer")
        if not 0 < request.limit <= MAX_HISTORY_LIMIT:
            return pb.HistoryReply(code=FAIL, message=f"limit must be from 1 to {MAX_HISTORY_LIMIT}")
        before = parse_id(request.before) if request.before else None
        if request.before and before is None:
            return pb.HistoryReply(code=FAIL, message="before is not a message id")
        if request.room_id > 0:
            conversation = Conversation.room(request.room_id)
        else:
            conversation = Conversation.pair(session.user_id, request.user_id)
        entries, more = await self.history.page(conversation, before, request.limit)
        return pb.HistoryReply(code=OK, messages=[with_id(body, i) for i, body in entries], more=more)

    async def purge_node(self, server_id: str) -> None:
        left = await self.sessions.purge_node(server_id, self._leave_announcement, self.member_lists.auto_limit)
        rooms = {room_id for room_id, _ in left}
        for room_id in rooms:
            self.member_lists.request(room_id)
        log.info("purged dead connect node", extra=kv(server_id=server_id, rooms=len(rooms)))


__all__ = ["LogicService", "Session"]
