"""Router.plan: which connect node gets which delivery; frame_body: the bytes the sockets get."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import Entry
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.task import router as router_module
from gochat_py.task.router import MSG_VERSION, Router, call_chunks, frame_body

NODES = {"ws-a": "10.0.0.1:6912", "ws-b": "10.0.0.2:6912", "tcp-c": "10.0.0.3:6914"}


class FakeClients:
    """Stand-in for ConnectClients: plan() never touches it; deliver() uses the methods below."""

    def __init__(self, nodes: dict[str, str], down: frozenset[str] = frozenset()) -> None:
        self.nodes = nodes
        self.down = down
        self.calls: list[tuple[str, pb.DeliverRequest, float]] = []
        self.revisions: dict[str, int] = dict.fromkeys(nodes, 1)
        self.resets: list[str] = []

    def by_server_id(self) -> dict[str, str]:
        return dict(self.nodes)

    def registrations(self) -> dict[str, int]:
        return dict(self.revisions)

    def reset(self, address: str) -> None:
        self.resets.append(address)

    def stub(self, address: str) -> Any:
        clients = self

        class Stub:
            async def Deliver(self, request: pb.DeliverRequest, timeout: float) -> pb.PushReply:
                clients.calls.append((address, request, timeout))
                if address in clients.down:
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, details="down")
                return pb.PushReply(code=0)

        return Stub()


def router(nodes: dict[str, str] | None = None, down: frozenset[str] = frozenset()) -> Router:
    return Router(FakeClients(nodes or {}, down), timeout=2.5)  # type: ignore[arg-type]


def entry(ident: str, **fields: Any) -> Entry:
    return Entry(ident, QueueMessage(**fields))


# --- frame_body ---------------------------------------------------------------------------------


def test_frame_body_private_and_room_messages_are_the_msg_bytes() -> None:
    assert frame_body(QueueMessage(op=2, msg=b'{"x":1}')) == b'{"x":1}'
    assert frame_body(QueueMessage(op=3, msg=b'{"y":2}')) == b'{"y":2}'


def test_frame_body_null_msg_is_empty() -> None:
    assert frame_body(QueueMessage(op=3, msg=None)) == b""


def test_frame_body_room_count() -> None:
    assert frame_body(QueueMessage(op=4, room_id=1, count=3)) == b'{"count":3,"op":4}'
    assert frame_body(QueueMessage(op=4, room_id=1, count=0)) == b'{"op":4}'


def test_frame_body_room_info_recounts_members() -> None:
    message = QueueMessage(op=5, room_id=1, count=99, room_user_info={"2": "test", "1": "lock"})
    assert frame_body(message) == b'{"op":5,"roomId":1,"count":2,"roomUserInfo":{"1":"lock","2":"test"}}'


@pytest.mark.parametrize("op", [0, 1, 6, 7, -1])
def test_frame_body_unknown_op_is_none(op: int) -> None:
    assert frame_body(QueueMessage(op=op, msg=b"x")) is None


# --- plan ---------------------------------------------------------------------------------------


def test_private_message_goes_to_the_recorded_server_only() -> None:
    r = router()
    batches, targets = r.plan([entry("1-0", op=2, server_id="ws-b", user_id=7, msg=b"hi")], NODES)
    assert set(batches) == {"ws-b"}
    assert targets == {"1-0": {"ws-b"}}
    [delivery] = batches["ws-b"]
    assert delivery.WhichOneof("target") == "user_id"
    assert delivery.user_id == 7
    assert delivery.msg == pb.Msg(ver=MSG_VERSION, op=2, seq_id="1-0", body=b"hi")
    assert MSG_VERSION == 1
    assert r.stats.by_op[2] == 1


def test_private_message_goes_to_every_live_node_of_the_user() -> None:
    r = router()
    message = entry("1-0", op=2, server_id="ws-a,ws-b,ws-gone", user_id=7, msg=b"hi")
    batches, targets = r.plan([message], NODES)
    assert set(batches) == {"ws-a", "ws-b"}
    assert targets == {"1-0": {"ws-a", "ws-b"}}
    assert all(b[0].user_id == 7 for b in batches.values())


@pytest.mark.parametrize("server_id", ["", "ws-gone", "ws-gone,ws-gone-too"])
def test_private_message_to_an_offline_user_has_no_target(server_id: str) -> None:
    r = router()
    batches, targets = r.plan([entry("1-0", op=2, server_id=server_id, user_id=7, msg=b"hi")], NODES)
    assert dict(batches) == {}
    assert targets == {"1-0": set()}
    assert r.stats.offline == 1


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        ({"op": 3, "room_id": 1, "msg": b'{"m":1}'}, b'{"m":1}'),
        ({"op": 3, "room_id": 1, "msg": None}, b""),
        ({"op": 4, "room_id": 1, "count": 3}, b'{"count":3,"op":4}'),
        (
            {"op": 5, "room_id": 1, "room_user_info": {"1": "lock"}},
            b'{"op":5,"roomId":1,"count":1,"roomUserInfo":{"1":"lock"}}',
        ),
    ],
)
def test_room_frames_go_to_every_node_once(fields: dict[str, Any], body: bytes) -> None:
    r = router()
    batches, targets = r.plan([entry("5-1", **fields)], NODES)
    assert set(batches) == set(NODES)
    assert targets == {"5-1": set(NODES)}
    for server_id in NODES:
        [delivery] = batches[server_id]
        assert delivery.WhichOneof("target") == "room_id"
        assert delivery.room_id == 1
        assert delivery.msg == pb.Msg(ver=1, op=fields["op"], seq_id="5-1", body=body)


def test_room_frame_with_no_nodes_has_no_target() -> None:
    batches, targets = router().plan([entry("1-0", op=3, room_id=1, msg=b"x")], {})
    assert dict(batches) == {}
    assert targets == {"1-0": set()}


def test_undecodable_and_unknown_entries_are_dropped() -> None:
    r = router()
    entries = [
        Entry("1-0", None, "not JSON"),
        entry("2-0", op=0),
        entry("3-0", op=9, room_id=1, msg=b"x"),
    ]
    batches, targets = r.plan(entries, NODES)
    assert dict(batches) == {}
    assert targets == {"1-0": set(), "2-0": set(), "3-0": set()}
    assert r.stats.undecodable == 3


def test_entry_without_message_or_error_text_is_dropped() -> None:
    # Entry's error defaults to "", so Entry(id, None) is a valid value; plan must not crash on it.
    batches, targets = router().plan([Entry("1-0", None)], NODES)
    assert dict(batches) == {}
    assert targets == {"1-0": set()}


def test_a_batch_keeps_entry_order_per_node() -> None:
    entries = [
        entry("1-0", op=3, room_id=1, msg=b"a"),
        entry("2-0", op=2, server_id="ws-a", user_id=1, msg=b"b"),
        entry("3-0", op=4, room_id=2, count=1),
        entry("4-0", op=2, server_id="ws-b", user_id=2, msg=b"c"),
        entry("5-0", op=2, server_id="", user_id=3, msg=b"d"),
    ]
    r = router()
    batches, targets = r.plan(entries, NODES)
    assert [d.msg.seq_id for d in batches["ws-a"]] == ["1-0", "2-0", "3-0"]
    assert [d.msg.seq_id for d in batches["ws-b"]] == ["1-0", "3-0", "4-0"]
    assert [d.msg.seq_id for d in batches["tcp-c"]] == ["1-0", "3-0"]
    assert targets == {
        "1-0": set(NODES),
        "2-0": {"ws-a"},
        "3-0": set(NODES),
        "4-0": {"ws-b"},
        "5-0": set(),
    }
    assert dict(r.stats.by_op) == {3: 1, 2: 3, 4: 1}
    assert r.stats.offline == 1


# --- deliver (with a fake client pool) ----------------------------------------------------------


async def test_deliver_sends_one_call_per_node_and_acks_everything() -> None:
    r = router(NODES)
    entries = [entry("1-0", op=3, room_id=1, msg=b"a"), entry("2-0", op=2, server_id="ws-a", user_id=1)]
    done = await r.deliver(entries)
    assert sorted(done) == ["1-0", "2-0"]
    calls = r.clients.calls  # type: ignore[attr-defined]
    assert sorted(address for address, _, _ in calls) == sorted(NODES.values())
    assert all(timeout == 2.5 for _, _, timeout in calls)
    by_address = {address: [d.msg.seq_id for d in request.items] for address, request, _ in calls}
    assert by_address[NODES["ws-a"]] == ["1-0", "2-0"]
    assert by_address[NODES["ws-b"]] == ["1-0"]
    assert r.stats.delivered == 2


async def test_deliver_keeps_entries_a_failed_node_did_not_take() -> None:
    r = router(NODES, down=frozenset({NODES["ws-b"]}))
    entries = [
        entry("1-0", op=3, room_id=1, msg=b"a"),  # needs every node, ws-b failed
        entry("2-0", op=2, server_id="ws-a", user_id=1),  # ws-a only: done
        entry("3-0", op=2, server_id="ws-b", user_id=2),  # ws-b only: pending
        entry("4-0", op=2, server_id="", user_id=3),  # offline: done
        Entry("5-0", None, "bad"),  # undecodable: done
    ]
    done = await r.deliver(entries)
    assert sorted(done) == ["2-0", "4-0", "5-0"]
    assert r.stats.failed_calls == 1


async def test_a_node_that_refuses_connections_is_routed_around_until_it_answers() -> None:
    """Its clients are reconnecting elsewhere: holding messages back for it would reach them late."""
    now = [100.0]
    clients = FakeClients(NODES, down=frozenset({NODES["ws-b"]}))
    r = Router(clients, timeout=2.5, reprobe=3.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await r.deliver([entry("1-0", op=3, room_id=1, msg=b"a")]) == []  # ws-b failed: pending
    assert clients.resets == [NODES["ws-b"]]  # its next call dials afresh, with no backoff to wait out
    clients.calls.clear()
    assert await r.deliver([entry("1-0", op=3, room_id=1, msg=b"a")]) == ["1-0"]  # now without ws-b
    assert await r.deliver([entry("2-0", op=2, server_id="ws-b", user_id=2)]) == ["2-0"]  # offline there
    assert {address for address, _, _ in clients.calls} == {NODES["ws-a"], NODES["tcp-c"]}
    now[0] += 3.0  # tried again: still down, so still pending then
    assert await r.deliver([entry("3-0", op=3, room_id=1, msg=b"c")]) == []
    now[0] += 3.0
    clients.down = frozenset()  # back
    assert await r.deliver([entry("4-0", op=3, room_id=1, msg=b"d")]) == ["4-0"]
    assert await r.deliver([entry("5-0", op=2, server_id="ws-b", user_id=2)]) == ["5-0"]
    assert clients.calls[-1][0] == NODES["ws-b"]


async def test_a_node_that_registers_again_is_routed_to_at_once() -> None:
    """Restarted, it may have clients that joined after the messages queued since: they must get them."""
    now = [100.0]
    clients = FakeClients(NODES, down=frozenset({NODES["ws-b"]}))
    r = Router(clients, timeout=2.5, reprobe=3.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await r.deliver([entry("1-0", op=3, room_id=1, msg=b"a")]) == []
    clients.down = frozenset()
    clients.revisions["ws-b"] = 2  # it registered anew, well within the reprobe time
    clients.calls.clear()
    assert await r.deliver([entry("2-0", op=2, server_id="ws-b", user_id=2)]) == ["2-0"]
    assert [address for address, _, _ in clients.calls] == [NODES["ws-b"]]


async def test_a_slow_node_is_not_routed_around() -> None:
    r = Router(RefusingClients({"ws-a": NODES["ws-a"]}, refused="1-0"), timeout=2.5)  # type: ignore[arg-type]
    assert await r.deliver([entry("1-0", op=3, room_id=1, msg=b"a")]) == []
    assert await r.deliver([entry("2-0", op=3, room_id=1, msg=b"b")]) == ["2-0"]
    assert len(r.clients.calls) == 2  # type: ignore[attr-defined]


async def test_deliver_with_nothing_to_send_makes_no_call() -> None:
    r = router(NODES)
    assert await r.deliver([entry("1-0", op=2, server_id="ws-x", user_id=1)]) == ["1-0"]
    assert r.clients.calls == []  # type: ignore[attr-defined]


class RefusingClients(FakeClients):
    """Every node refuses a call that carries entry ``refused``."""

    def __init__(self, nodes: dict[str, str], refused: str) -> None:
        super().__init__(nodes)
        self.refused = refused

    def stub(self, address: str) -> Any:
        clients = self

        class Stub:
            async def Deliver(self, request: pb.DeliverRequest, timeout: float) -> pb.PushReply:
                clients.calls.append((address, request, timeout))
                if any(item.msg.seq_id == clients.refused for item in request.items):
                    raise grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, details="too big")
                return pb.PushReply(code=0)

        return Stub()


def big(ident: str, size: int) -> Entry:
    return entry(ident, op=3, room_id=1, msg=b"x" * size)


async def test_a_batch_larger_than_one_call_goes_in_several_calls_in_order() -> None:
    """Member lists of big rooms can make a batch larger than gRPC takes in one message; one
    oversize call would fail the whole batch on every retry."""
    one = {"ws-a": NODES["ws-a"]}
    r = router(one)
    mib = 1024 * 1024
    entries = [big(f"{n}-0", mib) for n in range(1, 11)]  # 10 MiB in all
    assert sorted(await r.deliver(entries)) == sorted(e.id for e in entries)
    calls = [[item.msg.seq_id for item in request.items] for _, request, _ in r.clients.calls]  # type: ignore[attr-defined]
    assert len(calls) == 4 and all(
        sum(len(e.message.msg or b"") for e in entries if e.id in c) <= 4 * mib for c in calls
    )
    assert [seq for call in calls for seq in call] == [e.id for e in entries]  # in order, each once


async def test_after_a_failed_call_the_rest_of_the_node_s_batch_waits_too() -> None:
    """Sending later messages after earlier ones failed would put them first once those are retried."""
    one = {"ws-a": NODES["ws-a"]}
    r = Router(RefusingClients(one, refused="5-0"), timeout=2.5)  # type: ignore[arg-type]
    mib = 1024 * 1024
    entries = [big(f"{n}-0", mib) for n in range(1, 11)]
    done = await r.deliver(entries)
    assert done == ["1-0", "2-0", "3-0"]  # the first call; the second held 5-0; the third never went
    assert len(r.clients.calls) == 2  # type: ignore[attr-defined]
    assert r.stats.failed_calls == 1


async def test_a_frame_too_large_for_any_call_is_dropped_and_counted() -> None:
    r = router(NODES)
    entries = [entry("1-0", op=3, room_id=1, msg=b"a"), big("2-0", 16 * 1024 * 1024), entry("3-0", op=3, msg=b"c")]
    assert sorted(await r.deliver(entries)) == ["1-0", "2-0", "3-0"]  # 2-0 is done with: never retried
    sent = {item.msg.seq_id for _, request, _ in r.clients.calls for item in request.items}  # type: ignore[attr-defined]
    assert sent == {"1-0", "3-0"}
    assert r.stats.too_large == 1


def test_call_chunks_keep_order_and_put_an_item_over_the_limit_alone() -> None:
    limit = router_module.MAX_CALL_BYTES
    items = [
        pb.Delivery(room_id=1, msg=pb.Msg(seq_id=str(n), body=b"x" * size))
        for n, size in enumerate((10, limit, 10, 10))
    ]
    chunks = call_chunks(items)
    assert [[i.msg.seq_id for i in chunk] for chunk in chunks] == [["0"], ["1"], ["2", "3"]]
    assert call_chunks([]) == []
