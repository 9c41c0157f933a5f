"""Sessions and room membership in Redis, every multi-key change one atomic Lua script.

Keys kept from the original: ``sess_<token>`` (hash userId/userName), ``sess_map_<uid>`` (the
user's current token), ``gochat_<uid>`` (server id of the connect node holding the user),
``gochat_room_<rid>`` (hash uid -> name) and ``gochat_room_online_count_<rid>`` (always HLEN of
that hash).  Added so that several tabs, several nodes and dead nodes are counted right:
``gochat_room_refs_<rid>`` (uid -> live sockets in the room), ``gochat_user_nodes_<uid>`` (server
id -> sockets of the user there), ``gochat_node_<sid>`` ("rid:uid" -> sockets on that node) and
the set ``gochat_nodes`` of server ids holding anything.

Sessions expire after ``ttl`` seconds unused: every successful check of a token (CheckAuth, a
push with a token, a socket joining) renews ``sess_<token>`` and ``sess_map_<uid>``.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

NODES_KEY = "gochat_nodes"
NO_ROOM = 0
KNOWN_TOKENS = 100_000  # tokens whose user SessionStore.known remembers

_LOGIN = """
-- KEYS: sess_<new token>, sess_map_<uid>; ARGV: uid, name, ttl, new token
local old = redis.call('GET', KEYS[2])
if old then redis.call('DEL', 'sess_' .. old) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'userId', ARGV[1], 'userName', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
return 1
"""

# KEYS: sess_<token> for each of the first ARGV[1] keys, then gochat_user_nodes_<uid> for the
# rest; ARGV: that count, ttl.  For each token the session's {userId, userName} or nil, a hit
# renewing the TTL of the session and of its user's token map (sliding expiry); then for each
# user the connect nodes holding a socket of theirs.  One command for a whole batch of pushes:
# redis-py costs tens of microseconds per command of a pipeline, a script's loop almost nothing.
_LOOKUP = """
local tokens, ttl = tonumber(ARGV[1]), ARGV[2]
local found = {}
for i = 1, tokens do
  local user = redis.call('HMGET', KEYS[i], 'userId', 'userName')
  if user[1] and user[2] then
    redis.call('EXPIRE', KEYS[i], ttl)
    redis.call('EXPIRE', 'sess_map_' .. user[1], ttl)
    found[i] = user
  else
    found[i] = false
  end
end
for i = tokens + 1, #KEYS do
  found[i] = redis.call('HKEYS', KEYS[i])
end
return found
"""

# KEYS: room, count, refs, node, user_nodes, user_server, nodes, inbox cursor, the queue's stream;
# ARGV: uid, name, rid, sid, the queue entry announcing the join to v2 sockets ('' = none), the
# largest room that gets it.  The entry is queued here, with the change it announces: announced
# from outside, a join and a leave racing each other could be queued in the other order.  No TTLs
# on membership: it lives exactly as long as the sockets (a
# dead node's is purged), so a socket open for days still gets its private messages.
# Returns {whether the user had no socket open before this one, the inbox cursor ('' = none), the
# queue's last id, the user's sockets in the room now (0 for no room), the room's members}: read
# atomically with the join, so every message queued before it is in the backlog and every message
# queued after it is routed to this node (queue.py records a private message's nodes in the command
# that queues it).  With ARGV[7] '1', the room's member hash (HGETALL) as a sixth item.
# With a tenth key, sess_<token>, the token is checked first, as _LOOKUP does (a hit renews the
# session for ARGV[8] seconds): nil, and nothing changed, unless its session is ARGV[1]/ARGV[2].
# One script for check, join and snapshot: each redis-py round trip costs logic more than the
# script's work does.
_CONNECT = """
local uid, name, rid, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if KEYS[10] then
  local user = redis.call('HMGET', KEYS[10], 'userId', 'userName')
  if user[1] ~= uid or user[2] ~= name then return nil end
  redis.call('EXPIRE', KEYS[10], ARGV[8])
  redis.call('EXPIRE', 'sess_map_' .. uid, ARGV[8])
end
local was_offline = redis.call('HLEN', KEYS[5]) == 0 and 1 or 0
redis.call('SADD', KEYS[7], sid)
redis.call('HINCRBY', KEYS[4], rid .. ':' .. uid, 1)
redis.call('HINCRBY', KEYS[5], sid, 1)
redis.call('SET', KEYS[6], sid)
local refs, members = 0, 0
if rid ~= '0' then
  refs = redis.call('HINCRBY', KEYS[3], uid, 1)
  redis.call('HSET', KEYS[1], uid, name)
  members = redis.call('HLEN', KEYS[1])
  redis.call('SET', KEYS[2], members)
  if refs == 1 and ARGV[5] ~= '' and members <= tonumber(ARGV[6]) then
    redis.call('XADD', KEYS[9], '*', 'm', ARGV[5])
  end
end
local last = '0-0'
if redis.call('EXISTS', KEYS[9]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[9])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local snapshot = {}
if ARGV[7] == '1' then snapshot = redis.call('HGETALL', KEYS[1]) end
return {was_offline, redis.call('GET', KEYS[8]) or '', last, refs, members, snapshot}
"""

# Same KEYS; ARGV: uid, rid, sid, amount, the newest private message id the node wrote to the user
# ('' = none; the inbox cursor becomes the larger of the two), the queue entry announcing the leave
# ('' = none), the largest room that gets it.  Returns the user's sockets left in
# the room, or -1 when this node held none (a repeated or late disconnect changes nothing).
_DISCONNECT = """
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not bm then return false end
  if not am then return true end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
if ARGV[5] ~= '' then
  local cursor = redis.call('GET', KEYS[8])
  if not cursor or before(cursor, ARGV[5]) then redis.call('SET', KEYS[8], ARGV[5]) end
end
local uid, rid, sid = ARGV[1], ARGV[2], ARGV[3]
local field = rid .. ':' .. uid
local held = tonumber(redis.call('HGET', KEYS[4], field) or '0')
if held <= 0 then return -1 end
local amount = math.min(tonumber(ARGV[4]), held)
if redis.call('HINCRBY', KEYS[4], field, -amount) <= 0 then redis.call('HDEL', KEYS[4], field) end
if redis.call('HINCRBY', KEYS[5], sid, -amount) <= 0 then
  redis.call('HDEL', KEYS[5], sid)
  if redis.call('GET', KEYS[6]) == sid then
    local others = redis.call('HKEYS', KEYS[5])
    if #others > 0 then redis.call('SET', KEYS[6], others[1]) else redis.call('DEL', KEYS[6]) end
  end
end
if rid == '0' then return 0 end
local left = redis.call('HINCRBY', KEYS[3], uid, -amount)
if left <= 0 then
  redis.call('HDEL', KEYS[3], uid)
  redis.call('HDEL', KEYS[1], uid)
  left = 0
end
local members = redis.call('HLEN', KEYS[1])
if members > 0 then redis.call('SET', KEYS[2], members) else redis.call('DEL', KEYS[2]) end
if left == 0 and ARGV[6] ~= '' and members < tonumber(ARGV[7]) then
  redis.call('XADD', KEYS[9], '*', 'm', ARGV[6])
end
return left
"""


# KEYS: a room's member hash; ARGV: the most members wanted.  The hash, or nil when the room is
# larger (then not read at all: a big room's list is large, and wanted by nobody).
_MEMBERS_UP_TO = """
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then return nil end
return redis.call('HGETALL', KEYS[1])
"""


def new_token() -> str:
    """32 random bytes, URL-safe base64 with padding: 44 characters, as the original's."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    user_name: str


@dataclass(frozen=True, slots=True)
class Joined:
    """What the join script saw, atomically with recording the socket."""

    was_offline: bool  # the user had no socket open anywhere
    inbox_cursor: str  # newest private message delivered to the user ("" = none known)
    queue_end: str  # the queue's last id: everything up to it is backlog, everything after live
    entered: bool = False  # this is the user's first socket in the room: they joined it
    room_size: int = 0  # the room's members now
    members: dict[str, str] | None = None  # the room's member hash, when asked for


def inbox_cursor_key(user_id: int) -> str:
    """The newest private message delivered to the user: set just below the first one sent to them
    (queue.Outgoing.mark_key), absent while none was."""
    return f"gochat_inbox_cursor_{user_id}"


def user_nodes_key(user_id: int) -> str:
    """Hash of server id -> the user's sockets there: where a private message goes."""
    return f"gochat_user_nodes_{user_id}"


def room_key(room_id: int) -> str:
    return f"gochat_room_{room_id}"


def user_server_key(user_id: int) -> str:
    return f"gochat_{user_id}"


class SessionStore:
    def __init__(self, redis: Redis, ttl: int, stream: str = "gochat_stream") -> None:
        """``stream``: the queue's, whose last id a join reads."""
        self.redis = redis
        self.ttl = ttl
        self.stream = stream
        self._login = redis.register_script(_LOGIN)
        self._lookup = redis.register_script(_LOOKUP)
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._members_up_to = redis.register_script(_MEMBERS_UP_TO)
        # token -> whose it was at its last check.  A token names one session for its life, so
        # this only says which user a join's script should find (and whose name its announcement
        # carries): the script checks the token itself, and a miss costs one more round trip.
        self._known: OrderedDict[str, Session] = OrderedDict()

    async def login(self, user_id: int, user_name: str) -> str:
        """A new token; the user's previous login token stops working (single session)."""
        token = new_token()
        await self._login(
            keys=[f"sess_{token}", f"sess_map_{user_id}"],
            args=[user_id, user_name, self.ttl, token],
        )
        return token

    async def check(self, token: str) -> Session | None:
        """The token's session, which stays alive ``ttl`` seconds from now; None if there is none."""
        if not token:
            return None
        sessions, _ = await self.senders_and_targets([token], [])
        session = sessions[token]
        self._remember(token, session)
        return session

    def known(self, token: str) -> Session | None:
        """Whose the token was at its last check here (unchecked now; None: not known)."""
        return self._known.get(token)

    def _remember(self, token: str, session: Session | None) -> None:
        known = self._known
        if session is None:
            known.pop(token, None)
            return
        known[token] = session
        if len(known) > KNOWN_TOKENS:
            known.popitem(last=False)

    async def logout(self, token: str) -> Session | None:
        session = await self.check(token)
        if session is None:
            return None
        self._known.pop(token, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"sess_{token}", user_server_key(session.user_id))
            pipe.delete(f"sess_map_{session.user_id}")
            await pipe.execute()
        return session

    def _member_keys(self, user_id: int, room_id: int, server_id: str) -> list[str]:
        return [
            room_key(room_id),
            f"gochat_room_online_count_{room_id}",
            f"gochat_room_refs_{room_id}",
            f"gochat_node_{server_id}",
            user_nodes_key(user_id),
            user_server_key(user_id),
            NODES_KEY,
            inbox_cursor_key(user_id),
            self.stream,
        ]

    async def connect(
        self, session: Session, room_id: int, server_id: str, announce: bytes = b"", announce_limit: int = 0
    ) -> Joined:
        """``announce``: a queue entry to queue if the user enters the room by this (their first
        socket in it) and it has at most ``announce_limit`` members then."""
        joined = await self._join(session, room_id, server_id, announce, announce_limit)
        assert joined is not None  # no token, no check
        return joined

    async def connect_checked(
        self,
        token: str,
        session: Session,
        room_id: int,
        server_id: str,
        announce: bytes = b"",
        announce_limit: int = 0,
        members: bool = False,
    ) -> Joined | None:
        """:meth:`connect` for the holder of ``token``, checked (and renewed, as :meth:`check`
        does) in the same script: None, and nothing recorded, unless the token's session is
        ``session``.  ``members``: the room's member hash comes back too, read with the join."""
        joined = await self._join(session, room_id, server_id, announce, announce_limit, token, members)
        if joined is None:
            self._known.pop(token, None)
        return joined

    async def _join(
        self,
        session: Session,
        room_id: int,
        server_id: str,
        announce: bytes,
        announce_limit: int,
        token: str = "",
        members: bool = False,
    ) -> Joined | None:
        room_id = max(room_id, NO_ROOM)
        keys = self._member_keys(session.user_id, room_id, server_id)
        if token:
            keys.append(f"sess_{token}")
        reply = await self._connect(
            keys=keys,
            args=[
                session.user_id,
                session.user_name,
                room_id,
                server_id,
                announce,
                announce_limit,
                int(members),
                self.ttl,
            ],
        )
        if reply is None:
            return None
        was_offline, cursor, end, refs, size, flat = reply
        snapshot = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)} if members else None
        return Joined(bool(was_offline), _text(cursor), _text(end), int(refs) == 1, int(size), snapshot)

    async def disconnect(
        self,
        user_id: int,
        room_id: int,
        server_id: str,
        amount: int = 1,
        last_private_id: str = "",
        announce: bytes = b"",
        announce_limit: int = 0,
    ) -> int:
        """Returns the user's sockets still in the room (0: the user left it; -1: nothing held).
        ``announce``: a queue entry to queue if the user leaves the room by this and it has fewer
        than ``announce_limit`` members then."""
        room_id = max(room_id, NO_ROOM)
        return int(
            await self._disconnect(
                keys=self._member_keys(user_id, room_id, server_id),
                args=[user_id, room_id, server_id, amount, last_private_id, announce, announce_limit],
            )
        )

    async def senders_and_targets(
        self, tokens: list[str], user_ids: list[int]
    ) -> tuple[dict[str, Session | None], dict[int, str]]:
        """:meth:`check` of every token, and every connect node holding a socket of each user
        (comma-separated: the queue message's serverId; ``gochat_<uid>`` names only the latest
        one), in one command."""
        if not tokens and not user_ids:
            return {}, {}
        keys = [f"sess_{token}" for token in tokens] + [user_nodes_key(user_id) for user_id in user_ids]
        replies = await self._lookup(keys=keys, args=[len(tokens), self.ttl])
        sessions: dict[str, Session | None] = {}
        for token, user in zip(tokens, replies, strict=False):
            try:
                sessions[token] = Session(int(user[0]), user[1].decode())
            except (TypeError, ValueError, IndexError):
                sessions[token] = None
        servers = {
            user_id: ",".join(sorted(s.decode() for s in sids))
            for user_id, sids in zip(user_ids, replies[len(tokens) :], strict=True)
        }
        return sessions, servers

    async def members(self, room_id: int) -> dict[str, str]:
        raw = await self.redis.hgetall(room_key(room_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def members_up_to(self, room_id: int, limit: int) -> dict[str, str] | None:
        """:meth:`members`, or None (unread) when the room has more than ``limit``."""
        flat = await self._members_up_to(keys=[room_key(room_id)], args=[limit])
        if flat is None:
            return None
        return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def online_count(self, room_id: int) -> int:
        value = await self.redis.get(f"gochat_room_online_count_{room_id}")
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    async def nodes_with_members(self) -> set[str]:
        return {sid.decode() for sid in await self.redis.smembers(NODES_KEY)}

    async def purge_node(
        self, server_id: str, announce: Callable[[int, int], Awaitable[bytes]] | None = None, announce_limit: int = 0
    ) -> set[tuple[int, int]]:
        """Forgets every socket a dead node held; returns the (room, user) pairs of users who left
        a room by it.  ``announce(room, user)``: the queue entry announcing such a leave."""
        held = await self.redis.hgetall(f"gochat_node_{server_id}")
        changed: set[tuple[int, int]] = set()
        for field, amount in held.items():
            room_text, _, user_text = field.decode().partition(":")
            room_id, user_id = int(room_text), int(user_text)
            entry = await announce(room_id, user_id) if announce is not None and room_id != NO_ROOM else b""
            left = await self.disconnect(
                user_id, room_id, server_id, int(amount), announce=entry, announce_limit=announce_limit
            )
            if left == 0 and int(room_text) != NO_ROOM:
                changed.add((int(room_text), int(user_text)))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"gochat_node_{server_id}")
            pipe.srem(NODES_KEY, server_id)
            await pipe.execute()
        return changed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
