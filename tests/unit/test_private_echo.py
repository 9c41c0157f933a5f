"""A private message's copy to its sender (the echo): task's plan sends it to the sender's nodes,
naming the origin socket only to its own node; connect writes it to the sender's v2 sockets less
the origin, never to a v1 socket, and tells its repeats apart from the recipient's copy."""

from __future__ import annotations

import json

from gochat_py.connect.dedup import RecentIds
from gochat_py.connect.hub import Channel, Hub
from gochat_py.connect.service import ConnectService
from gochat_py.protocol.frames import OP_SINGLE_SEND, Send
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import Entry
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.task.router import Router
from tests.unit.test_hub import StuckTransport
from tests.unit.test_router import FakeClients

ANN, BOB = 7, 9
NODES = {"ws-a": "10.0.0.1:6912", "ws-b": "10.0.0.2:6912", "tcp-c": "10.0.0.3:6914"}
BODY = Send(
    msg="hi", from_user_id=ANN, from_user_name="ann", to_user_id=BOB, to_user_name="bob", room_id=0, op=OP_SINGLE_SEND
).encode()


def private(ident: str, holders: str, echo_servers: str = "", origin: str = "", echo_user: int = ANN) -> Entry:
    message = QueueMessage(op=OP_SINGLE_SEND, user_id=BOB, msg=BODY)
    return Entry(ident, message, servers=holders, echo_servers=echo_servers, echo_user=echo_user, origin=origin)


def plan(*entries: Entry) -> tuple[dict[str, list[pb.Delivery]], dict[str, set[str]]]:
    return Router(FakeClients(NODES), timeout=1).plan(list(entries), NODES)  # type: ignore[arg-type]


# --- task --------------------------------------------------------------------------------------


def test_the_echo_goes_to_the_senders_nodes_and_names_the_origin_only_to_its_own_node() -> None:
    batches, targets = plan(private("5-0", "ws-b", echo_servers="ws-a,tcp-c,gone", origin="12@ws-a"))
    assert targets == {"5-0": {"ws-a", "ws-b", "tcp-c"}}  # a node that failed the echo retries the entry
    assert [(d.user_id, d.echo) for d in batches["ws-b"]] == [(BOB, False)]
    (on_a,) = batches["ws-a"]
    (on_c,) = batches["tcp-c"]
    assert (on_a.user_id, on_a.echo, on_a.origin, on_a.msg.seq_id) == (ANN, True, 12, "5-0")
    assert (on_c.user_id, on_c.echo, on_c.origin) == (ANN, True, 0)


def test_no_echo_without_the_senders_nodes_and_an_offline_pair_is_done() -> None:
    batches, targets = plan(private("5-0", "ws-b"), private("6-0", "", echo_servers="gone"))
    assert [d.echo for d in batches["ws-b"]] == [False] and set(batches) == {"ws-b"}
    assert targets["6-0"] == set()


def test_an_http_send_has_no_origin_and_an_echo_reaches_a_node_the_recipient_is_not_on() -> None:
    batches, targets = plan(private("5-0", "", echo_servers="ws-a", origin=""))
    assert targets == {"5-0": {"ws-a"}}
    (delivery,) = batches["ws-a"]
    assert delivery.echo and delivery.origin == 0


def test_a_bad_origin_skips_no_socket() -> None:
    batches, _ = plan(private("5-0", "", echo_servers="ws-a", origin="x@ws-a"))
    assert batches["ws-a"][0].origin == 0


# --- connect -----------------------------------------------------------------------------------


def channel(hub: Hub, user_id: int, version: int, tag: int = 0, room: int = 0) -> Channel:
    made = Channel(user_id, f"u{user_id}", room, StuckTransport(), 1 << 20, version=version)
    made.tag = tag
    hub.put(made)
    return made


def frames(channel: Channel) -> list[dict]:
    written = b"".join(channel.transport.written)  # type: ignore[attr-defined]
    return [json.loads(line) for line in written.replace(b"}{", b"}\n{").splitlines()]


def deliveries(seq_id: str = "1700000000000-0", origin: int = 3) -> pb.DeliverRequest:
    msg = pb.Msg(ver=1, op=OP_SINGLE_SEND, seq_id=seq_id, body=BODY)
    return pb.DeliverRequest(
        items=[pb.Delivery(user_id=BOB, msg=msg), pb.Delivery(user_id=ANN, msg=msg, echo=True, origin=origin)]
    )


async def test_connect_writes_the_echo_to_the_senders_other_v2_sockets_only() -> None:
    hub = Hub(4)
    service = ConnectService(hub, RecentIds(100))
    origin, other, ann_v1 = channel(hub, ANN, 2, tag=3), channel(hub, ANN, 2, tag=4), channel(hub, ANN, 1, room=5)
    bob_v2, bob_v1 = channel(hub, BOB, 2, tag=5), channel(hub, BOB, 1, room=5)
    reply = await service.Deliver(deliveries(), None)
    assert reply.sockets == 3  # bob's two and ann's other v2 socket
    (echo,) = frames(other)
    assert echo == {
        "type": "message",
        "user": BOB,  # the other party, as ann reads it
        "to": BOB,
        "id": "1700000000000-0",
        "from": {"id": ANN, "name": "ann"},
        "msg": "hi",
        "time": 1700000000000,
    }
    assert frames(bob_v2) == [{**echo, "user": ANN}]  # same node, same id: not dropped as a repeat
    assert frames(bob_v1)[0]["op"] == OP_SINGLE_SEND
    assert origin.transport.written == [] and ann_v1.transport.written == []  # type: ignore[attr-defined]
    # only the note of what reached the recipient moves the inbox cursor
    assert set(service.last_private) == {BOB}


async def test_a_retried_delivery_writes_nothing_twice() -> None:
    hub = Hub(4)
    service = ConnectService(hub, RecentIds(100))
    other, bob = channel(hub, ANN, 2, tag=4), channel(hub, BOB, 2, tag=5)
    await service.Deliver(deliveries(), None)
    again = await service.Deliver(deliveries(), None)
    assert again.sockets == 0
    assert len(frames(other)) == 1 and len(frames(bob)) == 1


async def test_a_held_socket_renders_the_echo_later_and_the_held_origin_still_skips_it() -> None:
    hub = Hub(4)
    service = ConnectService(hub, RecentIds(100))
    origin, other = channel(hub, ANN, 2, tag=3), channel(hub, ANN, 2, tag=4)
    hub.hold(origin)
    hub.hold(other)
    await service.Deliver(deliveries(), None)
    held_origin, held_other = hub.release(origin), hub.release(other)
    assert [origin.render(r) for r in held_origin if not isinstance(r, bytes)] == [b""]
    (rendered,) = [other.render(r) for r in held_other if not isinstance(r, bytes)]
    assert json.loads(rendered)["user"] == BOB


async def test_an_echo_with_no_v2_socket_here_writes_nothing() -> None:
    hub = Hub(4)
    service = ConnectService(hub, RecentIds(100))
    ann_v1 = channel(hub, ANN, 1, room=5)
    msg = pb.Msg(ver=1, op=OP_SINGLE_SEND, seq_id="1-0", body=BODY)
    reply = await service.Deliver(pb.DeliverRequest(items=[pb.Delivery(user_id=ANN, msg=msg, echo=True)]), None)
    assert reply.sockets == 0 and ann_v1.transport.written == []  # type: ignore[attr-defined]
    # a v2 socket of someone else on the node makes the forms be built: still nothing for the v1 one
    channel(hub, BOB, 2, tag=1)
    msg.seq_id = "2-0"
    reply = await service.Deliver(pb.DeliverRequest(items=[pb.Delivery(user_id=ANN, msg=msg, echo=True)]), None)
    assert reply.sockets == 0 and ann_v1.transport.written == []  # type: ignore[attr-defined]
