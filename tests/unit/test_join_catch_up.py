"""A socket that resumes: frames delivered while its join was with logic are written after the
backlog, less what the backlog had, and in the form the socket asked for (with ids)."""

from __future__ import annotations

from gochat_py.config import load_settings
from gochat_py.connect.hub import Channel, Run
from gochat_py.connect.node import ConnectNode
from gochat_py.protocol.message_id import parse_id, with_id
from gochat_py.rpc import logic_pb2 as pb
from tests.unit.test_hub import StuckTransport, drain


def body(n: int) -> bytes:
    return b'{"msg":"r%d","roomId":7,"op":3}' % n


def message_id(n: int) -> str:
    return f"1700000000{n:03d}-0"


def held_run(numbers: list[int]) -> Run:
    """What a delivery of these room messages puts in a held channel (service._item's forms)."""
    items = [(parse_id(message_id(n)), body(n), with_id(body(n), message_id(n)), b"") for n in numbers]
    return Run(b"".join(body(n) for n in numbers), items, room=7)


async def test_frames_held_during_a_resuming_join_keep_their_ids() -> None:
    settings = load_settings(env="dev", environ={})
    node = ConnectNode(settings, settings.connect_websocket, "ws", encode=lambda frame: frame)
    channel = Channel(1, "bob", 7, StuckTransport(), 1 << 20)
    channel.ids = True  # joined with since
    node.hub.put(channel)
    node.hub.hold(channel)
    channel.push(b"", held_run([2, 3]))  # task delivered r2 and r3 while logic answered
    reply = pb.ConnectReply(code=0, user_id=1, user_name="bob", backlog_end=message_id(2))
    reply.backlog.append(pb.StoredMessage(id=message_id(2), op=3, body=body(2)))
    node._catch_up(channel, reply)
    # r2 once (from the backlog), then r3 from what was held: both with their ids
    assert b"".join(drain(channel)) == with_id(body(2), message_id(2)) + with_id(body(3), message_id(3))
