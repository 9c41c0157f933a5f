"""Redis behind Sentinel: the primary is killed with SIGKILL under steady load, the Sentinels
promote a replica, and every module follows by itself (no restart).

Every push answered code 0 (each waited for a replica's acknowledgement, ``[redis]
wait_replicas = 1``) reaches the resuming clients exactly once; pushes during the failover get the
api's usual error envelope at once, none outlives the RPC deadline.  The killed server is started
again, as a supervisor would, and the Sentinels make it a replica of the promoted one.

Two layouts: a primary and one replica (after the kill no replica is left, so pushes are refused
until the old primary is back as a replica), and a primary and two replicas (the other replica
follows the promoted one at once).  Each prints its failover time: from the kill to the first
accepted push.  This module runs on its own Redis servers, Sentinels and etcd.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.harness import ApiClient, Cluster, SentinelInfra, eventually
from tests.e2e.test_history_faults import Account, Resumer, alive, id_key, start_clients, stop_clients, unique

RPC_TIMEOUT = 3.0  # [rpc] timeout (the default)
ANSWER_BOUND = RPC_TIMEOUT + 1.0  # an answer later than this is a hang
WAIT_TIMEOUT_MS = 500
CLUSTER_ENV = {
    "GOCHAT_TASK__CLAIM_IDLE": "1",
    "GOCHAT_REDIS__WAIT_REPLICAS": "1",
    "GOCHAT_REDIS__WAIT_TIMEOUT": str(WAIT_TIMEOUT_MS),
}
CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")
USUAL_ERRORS = {"rpc push msg fail!", "rpc push room msg fail!"}


@pytest.fixture(scope="module", params=[1, 2], ids=["one-replica", "two-replicas"])
def infra(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[SentinelInfra]:
    root = tmp_path_factory.mktemp("infra_sentinel")
    running = SentinelInfra(root, root / "infra.log", replicas=request.param).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cluster(infra: SentinelInfra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(infra, tmp_path_factory.mktemp("cluster"), **infra.module_env(), **CLUSTER_ENV)
    running.start(CLUSTER_MODULES)
    yield running
    running.stop()


@dataclass
class Sender:
    """Pushes room messages (every fourth a private one) one at a time until stopped, and keeps
    every answer: the accepted texts in order, the refused ones with their reply, and how long
    each took.  A request that outlives ``ANSWER_BOUND`` is a hang."""

    api: ApiClient
    account: Account
    room: int
    to_user: int
    room_accepted: list[str] = field(default_factory=list)
    private_accepted: list[str] = field(default_factory=list)
    accepted: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    refused: list[tuple[float, float, str, dict[str, Any]]] = field(default_factory=list)  # (start, end, text, reply)
    hangs: list[str] = field(default_factory=list)
    stopping: bool = False

    async def push(self, text: str, private: bool) -> dict[str, Any] | None:
        if private:
            path, body = "/push/push", {"toUserId": str(self.to_user), "roomId": 1}
        else:
            path, body = "/push/pushRoom", {"roomId": self.room}
        start = time.monotonic()
        try:
            reply = await asyncio.wait_for(
                self.api.post(path, {**body, "authToken": self.account.token, "msg": text}), ANSWER_BOUND
            )
        except TimeoutError:
            self.hangs.append(text)
            return None
        end = time.monotonic()
        if reply["code"] == 0:
            (self.private_accepted if private else self.room_accepted).append(text)
            self.accepted.append((start, end))
        else:
            self.refused.append((start, end, text, reply))
        return reply

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            private = n % 4 == 3
            reply = await self.push(f"{'p' if private else 'r'}{n}", private)
            n += 1
            if reply is not None and reply["code"] == 40000:
                await self.account.login()
            await asyncio.sleep(0.003 if reply is not None and reply["code"] == 0 else 0.05)

    def first_accepted_after(self, moment: float) -> float | None:
        return next((end for start, end in self.accepted if start > moment), None)


def check_exactly_once(client: Resumer, sender: Sender) -> int:
    """Every accepted push once, in the order it was accepted.  A refused push may have been
    delivered all the same (the primary queued it and died before a replica acknowledged it, or
    the answer was lost): at most once.  Returns how many refused pushes arrived."""
    refused = {text for _, _, text, _ in sender.refused}
    ambiguous = 0
    for op, accepted in ((3, sender.room_accepted), (2, sender.private_accepted if client.private else [])):
        got = client.texts(op)
        counts: dict[str, int] = {}
        for text in got:
            counts[text] = counts.get(text, 0) + 1
        lost = [t for t in accepted if t not in counts]
        repeated = sorted(t for t, c in counts.items() if c > 1)
        strangers = [t for t in counts if t not in refused and t not in set(accepted)]
        assert not lost, f"{client.account.name}: {len(lost)} accepted op-{op} messages lost, e.g. {lost[:5]}"
        assert not repeated, f"{client.account.name}: op-{op} messages repeated: {repeated[:5]}"
        assert not strangers, f"{client.account.name}: op-{op} messages nobody sent: {strangers[:5]}"
        assert [t for t in got if t not in refused] == accepted, f"{client.account.name}: op-{op} out of order"
        ambiguous += sum(1 for t in got if t in refused)
    ids = [id_key(b["id"]) for b in client.received]
    assert ids == sorted(ids), f"{client.account.name}: ids out of order"
    assert not client.gaps, client.gaps
    return ambiguous


async def test_sigkill_of_the_primary_under_load_loses_no_accepted_push(cluster: Cluster, infra: SentinelInfra) -> None:
    room = 424242
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        readers = [await Account(api, unique(f"bob{n}")).register() for n in range(2)]
        bob_id = await api.user_id(readers[0].token)
        clients = [Resumer([cluster.ws_url], account, room, private=(n == 0)) for n, account in enumerate(readers)]
        tasks = await start_clients(clients)
        sender = Sender(api, alice, room, bob_id)
        # a client resumes from the last id it saw: one that has seen none yet cannot
        first = unique("start")
        assert (await sender.push(first, private=False) or {}).get("code") == 0
        for client in clients:
            await eventually(lambda c=client: first in c.texts(3), 30, f"the first message at {client.account.name}")
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: all(len(c.received) >= 60 for c in clients), 60, "traffic before the kill")
        assert not sender.refused, sender.refused[:3]  # the replica acknowledges every push

        old_primary = infra.redis_address
        infra.redis.kill()
        killed = time.monotonic()
        await eventually(lambda: infra.primary() in infra.replica_addresses, 60, "a replica promoted")
        promoted = time.monotonic() - killed
        infra.restart_server(old_primary)  # as a supervisor would; it comes back as a replica
        await eventually(lambda: sender.first_accepted_after(killed) is not None, 60, "a push accepted again")
        first_accepted = sender.first_accepted_after(killed)
        assert first_accepted is not None
        failover = first_accepted - killed
        accepted_at_recovery = len(sender.accepted)
        await eventually(lambda: len(sender.accepted) > accepted_at_recovery + 150, 60, "traffic after the failover")

        sender.stopping = True
        await sending
        markers = [unique("end"), unique("endp")]
        assert (await sender.push(markers[0], private=False) or {}).get("code") == 0
        assert (await sender.push(markers[1], private=True) or {}).get("code") == 0
        for client in clients:
            await eventually(lambda c=client: markers[0] in c.texts(3), 60, f"the marker at {client.account.name}")
        await eventually(lambda: markers[1] in clients[0].texts(2), 60, "the private marker")
        await stop_clients(clients, tasks)
        await eventually(lambda: infra.role(old_primary) == "slave", 60, "the old primary following the new one")

    during = [(s, e, r) for s, e, _, r in sender.refused if s > killed and e < first_accepted]
    slowest = max(e - s for s, e in [*sender.accepted, *((s, e) for s, e, _, _ in sender.refused)])
    ambiguous = [check_exactly_once(client, sender) for client in clients]
    print(
        f"\nsentinel failover, {len(infra.replica_addresses)} replica(s): replica promoted {promoted:.2f} s after"
        f" the kill, first accepted push {failover:.2f} s after it; {len(during)} pushes refused meanwhile;"
        f" slowest answer {slowest:.2f} s; {len(sender.accepted)} accepted in all; refused pushes delivered"
        f" anyway: {ambiguous}"
    )
    assert not sender.hangs, f"requests that got no answer within {ANSWER_BOUND} s: {sender.hangs[:5]}"
    assert slowest < ANSWER_BOUND
    # not vacuous: pushes were tried while there was no primary, and got the usual error envelope
    assert during, "no push was refused during the failover"
    assert all(r["code"] == 1 and r["message"] in USUAL_ERRORS and r["data"] is None for _, _, r in during), during[:3]
    assert any(s > killed and e < killed + promoted for s, e, _ in during), "nothing tried before the promotion"
    assert infra.role(infra.primary()) == "master" and infra.primary() != old_primary
    alive(cluster)
