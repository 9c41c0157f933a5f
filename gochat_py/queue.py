"""The message queue between logic and task: a Redis Stream read through a consumer group.

Logic appends with XADD.  Task processes read with XREADGROUP and acknowledge with XACK only
after delivery, so a task killed mid-message leaves it pending; any live task process takes it
over with XAUTOCLAIM once it has been idle for ``claim_idle``.  The stream is trimmed up to the
oldest entry still pending, never past an unacknowledged one.  The entry id is the message id
that connect nodes use to drop repeats, and the id clients see (protocol.message_id).

A message can also be *kept*: the same command that queues it appends its frame body, under the
same id, to the hot stores of its conversations (storage.history), so a message is in both or in
neither.  A private message's entry also records, in the field ``s``, the connect nodes holding a
socket of its target at that moment, read in that same command: a socket that joins afterwards is
already on a node in the list, one that joined before finds the message in its backlog.  When it
is to be copied to its sender's other protocol-v2 sockets (``Outgoing.echo_key``), the entry also
records the sender's nodes (``e``), the sender (``u``) and the socket it came from (``o``), read
in the same command.

A push can be made *durable* across a failover of the primary: with ``wait_replicas`` set, the
command that queues it is followed by ``WAIT`` on the same connection, and a push that fewer
replicas acknowledged in time raises :class:`ReplicaWaitError` instead of counting as accepted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gochat_py.config import QueueSettings
from gochat_py.logs import kv
from gochat_py.metrics import MESSAGES_IN, REPLICA_WAIT_SHORT
from gochat_py.protocol.message_id import format_id, parse_id
from gochat_py.protocol.queue_message import QueueMessage, QueueMessageError

log = logging.getLogger("gochat.queue")
FIELD = b"m"
SERVERS_FIELD = b"s"
ECHO_SERVERS_FIELD, ECHO_USER_FIELD, ORIGIN_FIELD = b"e", b"u", b"o"


@dataclass(frozen=True, slots=True)
class GroupState:
    """How much waits for the consumer group, and whether it moves."""

    pending: int  # read by a consumer, not acknowledged yet
    unread: int  # not read by any consumer yet (counted up to the cap the caller gave)
    last_read: str  # the group's last-delivered-id: it moves while task reads
    oldest_unread_ms: int = 0  # how long the oldest unread entry has waited (0: none waits)

    @property
    def backlog(self) -> int:
        """Messages waiting for a task to pick them up.  Not the pending ones: those are in a
        task's hands, and pile up there only while a connect node is failing (then they wait for
        its lease to end or for a retry, and holding new pushes back would not help them)."""
        return self.unread


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    message: QueueMessage | None
    error: str = ""
    servers: str | None = None  # the field "s": comma-separated server ids, when logic recorded them
    # a private message copied to its sender: the nodes holding a socket of theirs ("e"), the
    # sender ("u", 0 = no copy) and the socket it was sent from ("o", see logic.proto PushRequest)
    echo_servers: str = ""
    echo_user: int = 0
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to queue, and what else the queuing command does with it."""

    message: QueueMessage
    holders_key: str = ""  # a Redis hash whose field names (server ids) become the entry's "s"
    keep_in: tuple[str, ...] = ()  # conversation stores (Redis streams) that get the body too
    body: bytes = b""  # what the stores keep: the frame body
    # set, unless it exists, to the id just before this message's (a private message's target: its
    # inbox cursor, which then says "nothing before this one is owed")
    mark_key: str = ""
    # the sender's client message id (mid_key): while it exists the message is not queued again
    mid_key: str = ""
    # a private message copied to its sender's other v2 sockets: the sender's holders hash (its
    # field names become the entry's "e"; '' = no copy), the sender, and the origin socket
    echo_key: str = ""
    echo_user: int = 0
    origin: str = ""


class ReplicaWaitError(RedisError):
    """Fewer replicas than asked hold a durable write: a failover now could lose it, so it is not
    reported as accepted.  ``queued``: the primary queued it all the same (the replicas did not
    acknowledge in time), so it may still be delivered; else nothing was queued (too few replicas
    were in sync to begin with)."""

    def __init__(self, message: str, queued: bool) -> None:
        super().__init__(message)
        self.queued = queued


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """``WAIT replicas timeout_ms`` after a durable write; 0 replicas = do not wait."""

    replicas: int = 0
    timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Keeping:
    """How the hot stores are bounded (storage.history)."""

    size: int
    ttl: int
    since_key: str  # set to the first id kept after Redis lost its data (or on a new install)
    mid_ttl: int = 600  # seconds a client message id is remembered (queue.Outgoing.mid_key)


# The group's {pending, unread, last-delivered-id, age of the oldest unread entry in ms (by Redis's
# clock, which wrote its id)}, or nil before the group exists; unread is counted up to ARGV[2].
# XINFO's own "lag" is not used: it comes from a counter of entries read
# that can drift from the stream (seen on a live system: a lag of 22,902 with nothing unread), and
# a wrong backlog makes logic hold back every push.
_GROUP_STATE = """
local function group_state(stream, name, cap)
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == name then
      local last = info['last-delivered-id']
      local entries = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', cap)
      local age = 0
      if #entries > 0 then
        local now = redis.call('TIME')
        local born = tonumber(string.match(entries[1][1], '^(%d+)'))
        age = math.max(0, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - born)
      end
      return {info['pending'], #entries, last, age}
    end
  end
  return false
end
"""

# Replicas that follow this server now: connected, synced, and heard from within the last few
# seconds (a replica acknowledges every second; Redis counts the lag in whole seconds, -1 just after
# an acknowledgement).
_REPLICAS_IN_SYNC = """
local function replicas_in_sync()
  local count, info = 0, redis.call('INFO', 'replication')
  for state, lag in string.gmatch(info, 'slave%d+:[^\\r\\n]*state=(%a+)[^\\r\\n]*lag=(%-?%d+)') do
    if state == 'online' and tonumber(lag) <= 3 then count = count + 1 end
  end
  return count
end
"""
NO_REPLICAS = "NOREPLICAS"  # the error the script answers with when too few replicas are in sync

# KEYS[1]: the stream; ARGV[1]: the group; ARGV[2]: cap of the unread count; ARGV[3], [4], [5]:
# size and ttl of the hot stores and the key marking where they begin; ARGV[6]: seconds a client
# message id is remembered; ARGV[7]: replicas that must be in sync, else nothing is queued (0 = no
# such check); then per message, in order: the queue entry, the holders hash ('' = none), the
# sender's holders hash for a copy to the sender ('' = none), the sender's id and the origin socket
# (recorded with that copy, when the sender has a node), the key to mark ('' = none), its client
# message id key ('' = none), the body to keep, how many stores keep it, and those stores.  A
# message whose client message id key exists is not queued again: its id is the one the key holds.
# Returns {the group's state, the ids}: one command for a whole batch (redis-py costs tens of
# microseconds per command of a pipeline).
_ENQUEUE = (
    _GROUP_STATE
    + _REPLICAS_IN_SYNC
    + """
local size, ttl, since_key, mid_ttl = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local needed = tonumber(ARGV[7])
if needed > 0 then
  local in_sync = replicas_in_sync()
  if in_sync < needed then
    return redis.error_reply('NOREPLICAS ' .. in_sync .. ' of ' .. needed .. ' replicas in sync')
  end
end
local ids = {}
local i = 8
while i <= #ARGV do
  local entry, holders, echo, echo_user, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local mark, mid, body = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local n = tonumber(ARGV[i + 8])
  local id = mid ~= '' and redis.call('GET', mid)
  if id then
    n = -n  -- queued before: nothing to do but answer its id
  else
    local fields = {'m', entry}
    if holders ~= '' then
      fields[3], fields[4] = 's', table.concat(redis.call('HKEYS', holders), ',')
    end
    if echo ~= '' then
      local senders = redis.call('HKEYS', echo)
      if #senders > 0 then
        fields[#fields + 1], fields[#fields + 2] = 'e', table.concat(senders, ',')
        fields[#fields + 1], fields[#fields + 2] = 'u', echo_user
        if origin ~= '' then fields[#fields + 1], fields[#fields + 2] = 'o', origin end
      end
    end
    id = redis.call('XADD', KEYS[1], '*', unpack(fields))
  end
  ids[#ids + 1] = id
  if n >= 0 then
    if mid ~= '' then redis.call('SET', mid, id, 'EX', mid_ttl) end
    if mark ~= '' and redis.call('EXISTS', mark) == 0 then
      local ms, seq = string.match(id, '^(%d+)-(%d+)$')
      if seq == '0' then
        redis.call('SET', mark, string.format('%.0f', tonumber(ms) - 1) .. '-18446744073709551615')
      else
        redis.call('SET', mark, ms .. '-' .. string.format('%.0f', tonumber(seq) - 1))
      end
    end
    for k = 1, n do
      local store = ARGV[i + 8 + k]
      redis.call('XADD', store, 'MAXLEN', '~', size, id, 'm', body)
      redis.call('EXPIRE', store, ttl)
    end
    if n > 0 then redis.call('SET', since_key, id, 'NX') end
  end
  i = i + 9 + math.abs(n)
end
return {group_state(KEYS[1], ARGV[1], ARGV[2]), ids}
"""
)
_STATE = _GROUP_STATE + "return group_state(KEYS[1], ARGV[1], ARGV[2])\n"
STATE_CAP = 10_000  # entries counted at most as unread (the count reads that many ids)


class MessageQueue:
    def __init__(
        self,
        redis: Redis,
        settings: QueueSettings,
        keeping: Keeping | None = None,
        group: str | None = None,
        replica_wait: ReplicaWait | None = None,
    ) -> None:
        """``group``: the consumer group this process reads in (task's by default);
        ``replica_wait``: what a durable enqueue waits for."""
        self.redis = redis
        self.stream = settings.stream
        self.group = group or settings.group
        self.keeping = keeping or Keeping(1, 60, "")
        self.replica_wait = replica_wait or ReplicaWait()
        self._enqueue = redis.register_script(_ENQUEUE)
        self._state = redis.register_script(_STATE)

    async def enqueue(self, message: QueueMessage) -> GroupState | None:
        return await self.enqueue_many([message])

    async def enqueue_many(
        self, messages: list[QueueMessage | Outgoing], cap: int = STATE_CAP, durable: bool = False
    ) -> GroupState | None:
        """All of them in one command, in order; the group's state comes back with them (None
        before any task created the group), its unread count up to ``cap``.  ``durable``: returns
        only once ``replica_wait.replicas`` replicas hold them too, else raises ReplicaWaitError."""
        return (await self.enqueue_with_ids(messages, cap, durable))[0]

    async def enqueue_with_ids(
        self, messages: list[QueueMessage | Outgoing], cap: int = STATE_CAP, durable: bool = False
    ) -> tuple[GroupState | None, list[str]]:
        """:meth:`enqueue_many`, and the messages' ids in order (for one with a ``mid_key`` seen
        before, the id it was queued under then)."""
        if not messages:
            return None, []
        keeping = self.keeping
        wait = self.replica_wait
        waiting = durable and wait.replicas > 0
        args: list[str | bytes | int] = [
            *(self.group, cap, keeping.size, keeping.ttl, keeping.since_key, keeping.mid_ttl),
            wait.replicas if waiting else 0,
        ]
        for item in messages:
            if isinstance(item, QueueMessage):
                args += [item.encode(), "", "", 0, "", "", "", b"", 0]
            else:
                message = item.message.encode()
                args += [
                    message,
                    item.holders_key,
                    item.echo_key,
                    item.echo_user,
                    item.origin,
                    item.mark_key,
                    item.mid_key,
                    item.body,
                    len(item.keep_in),
                    *item.keep_in,
                ]
        if waiting:
            try:
                (state, ids), acknowledged = await self._enqueue_and_wait(args)
            except ResponseError as exc:
                if not str(exc).startswith(NO_REPLICAS):
                    raise
                REPLICA_WAIT_SHORT.inc(len(messages))
                raise ReplicaWaitError(
                    f"{str(exc)[len(NO_REPLICAS) + 1 :]}; nothing queued, try again", False
                ) from None
        else:
            (state, ids), acknowledged = await self._enqueue(keys=[self.stream], args=args), None
        for item in messages:
            MESSAGES_IN.labels(item.op if isinstance(item, QueueMessage) else item.message.op).inc()
        if acknowledged is not None and acknowledged < wait.replicas:
            REPLICA_WAIT_SHORT.inc(len(messages))
            raise ReplicaWaitError(
                f"{acknowledged} of {wait.replicas} replicas acknowledged the write within {wait.timeout_ms} ms;"
                " try again",
                True,
            )
        return _group_state(state), [_text(i) for i in ids]

    async def _enqueue_and_wait(self, args: list[str | bytes | int]) -> tuple[list, int]:
        """The queuing script, then ``WAIT``, on one connection taken from the pool for both:
        WAIT counts the replicas holding *this connection's* writes, so on any other connection
        it would prove nothing.  WAIT follows only a script that queued something (WAIT blocks
        for its whole timeout whenever too few replicas are connected, whatever the connection
        wrote).  Never sent twice: after a lost connection the script may have run (a repeat
        would queue every message again), so the error goes to the caller, as any outage does."""
        pool = self.redis.connection_pool
        script = ("EVALSHA", self._enqueue.sha, 1, self.stream, *args)
        connection = await pool.get_connection()
        try:
            try:
                state = await _call(connection, script)
            except NoScriptError:  # a new primary after a failover, or SCRIPT FLUSH: nothing ran
                await _call(connection, ("SCRIPT", "LOAD", self._enqueue.script))
                state = await _call(connection, script)
            wait = self.replica_wait
            # WAIT blocks up to its own timeout: the read gets that on top of the usual one
            limit = wait.timeout_ms / 1000 + (connection.socket_timeout or 0)
            acknowledged = await _call(connection, ("WAIT", wait.replicas, wait.timeout_ms), limit)
            return state, int(acknowledged)
        except ResponseError:
            raise  # an error reply leaves the connection as clean as any other reply
        except BaseException:
            # a lost or timed-out connection may hold a late reply: it must not reach the next user
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)

    async def group_state(self, cap: int = STATE_CAP) -> GroupState | None:
        try:
            return _group_state(await self._state(keys=[self.stream], args=[self.group, cap]))
        except ResponseError as exc:  # no stream yet
            if "no such key" not in str(exc).lower():
                raise
            return None

    async def ensure_group(self, *others: str) -> None:
        """Creates the group (and the groups named in ``others``) reading from the start, so
        nothing queued before a task existed is lost."""
        for group in (self.group, *others):
            try:
                await self.redis.xgroup_create(self.stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        """Up to ``count`` new entries, waiting up to ``block_ms`` for the first (None: not at all)."""
        try:
            reply = await self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group was deleted under us (FLUSHALL, redis restart without data).
            await self.ensure_group()
            return []
        if not reply:
            return []
        return [_entry(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Takes over entries other consumers (dead or stuck) left unacknowledged."""
        entries: list[Entry] = []
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count
            )
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            entries.extend(_entry(entry_id, fields) for entry_id, fields in reply[1] if fields)
            if start == "0-0" or len(entries) >= count:
                return entries

    async def ack(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def backlog(self) -> tuple[int, int]:
        """(entries read but not acknowledged, entries no consumer has read yet, up to
        ``STATE_CAP``) of the group."""
        state = await self.group_state()
        return (state.pending, state.unread) if state else (0, 0)

    async def pending_count(self) -> int:
        summary = await self.redis.xpending(self.stream, self.group)
        return int(summary["pending"])

    async def trim(self, groups: list[str] | None = None) -> None:
        """Drops entries every group of ``groups`` (default: this one) is done with: older than the
        oldest entry that any of them has pending or not read yet.  Other groups on the stream
        (left from an earlier configuration) hold nothing back."""
        names = set(groups or [self.group])
        keep: tuple[int, int] | None = None
        for group in await self.redis.xinfo_groups(self.stream):
            if _text(group["name"]) not in names:
                continue
            if group["pending"]:
                summary = await self.redis.xpending(self.stream, _text(group["name"]))
                oldest = parse_id(_text(summary["min"])) if summary["pending"] else None
            else:
                oldest = None
            if oldest is None:
                oldest = parse_id(_text(group["last-delivered-id"]))
            if oldest is not None and (keep is None or oldest < keep):
                keep = oldest
        if keep is not None:
            await self.redis.xtrim(self.stream, minid=format_id(keep))

    async def forget_idle_consumers(self, idle_ms: int) -> None:
        """Removes consumer names of task processes that are gone and hold nothing."""
        for consumer in await self.redis.xinfo_consumers(self.stream, self.group):
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, _text(consumer["name"]))


async def _call(connection: AbstractConnection, command: tuple, timeout: float | None = None) -> Any:
    """One command on this connection, its error reply raised; ``timeout`` replaces the socket's."""
    await connection.send_command(*command)
    reply = await connection.read_response(timeout=timeout)
    if reply is None and timeout is not None:  # redis-py's way of saying the read timed out
        raise RedisTimeoutError(f"no answer to {command[0]} within {timeout:.1f} s")
    return reply


def _group_state(reply: list | None) -> GroupState | None:
    if not reply:
        return None
    return GroupState(int(reply[0]), int(reply[1]), _text(reply[2]), int(reply[3]) if len(reply) > 3 else 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    ident = _text(entry_id)
    data = fields.get(FIELD)
    if data is None:
        return Entry(ident, None, "entry has no 'm' field")
    servers = fields.get(SERVERS_FIELD)
    try:
        message = QueueMessage.decode(data)
    except QueueMessageError as exc:
        log.warning("undecodable queue entry", extra=kv(id=ident, error=str(exc)))
        return Entry(ident, None, str(exc))
    echo_user = _text(fields.get(ECHO_USER_FIELD, b""))
    return Entry(
        ident,
        message,
        servers=None if servers is None else _text(servers),
        echo_servers=_text(fields.get(ECHO_SERVERS_FIELD, b"")),
        echo_user=int(echo_user) if echo_user.isdigit() else 0,
        origin=_text(fields.get(ORIGIN_FIELD, b"")),
    )
