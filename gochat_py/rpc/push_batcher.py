"""Gathers the push requests that arrive together into one PushBatch call to logic.

A gRPC call costs a few hundred microseconds of CPU on each side whatever it carries, and logic
needs one Redis round trip per step however many messages it handles.  Under load many pushes
arrive in the same turn of the event loop; sending them as one batch makes each of them cheap.
Alone, a push waits for nothing: the batch is sent at the end of the current loop turn.

At most ``max_in_flight`` batches are on their way at once; pushes that arrive meanwhile wait for
one of them to come back and then go together (as Nagle's algorithm does for TCP).  The busier
logic is, the bigger the batches and the cheaper each push: the batch size follows the load by
itself, with no timer to tune, and an idle system adds no delay.
"""

from __future__ import annotations

import asyncio
import logging

from gochat_py.logs import kv
from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc.client import LogicClient, RpcError

log = logging.getLogger("gochat.rpc.push")


class PushBatcher:
    def __init__(self, logic: LogicClient, max_batch: int = 256, max_in_flight: int = 2) -> None:
        self._logic = logic
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[pb.PushItem, asyncio.Future[pb.Reply]]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False

    async def submit(self, item: pb.PushItem) -> pb.Reply:
        """Logic's reply for this item; raises RpcError if the batch did not get through."""
        future: asyncio.Future[pb.Reply] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule_flush()
        return await future

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and len(self._calls) < self._max_in_flight:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and len(self._calls) < self._max_in_flight:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            task = loop.create_task(self._send(batch))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        if self._pending:
            self._schedule_flush()

    async def _send(self, batch: list[tuple[pb.PushItem, asyncio.Future[pb.Reply]]]) -> None:
        """Settles every future of the batch, whatever happens: a request never hangs."""
        try:
            reply = await self._logic.call("PushBatch", pb.PushBatchRequest(items=[item for item, _ in batch]))
            if len(reply.replies) != len(batch):
                raise RpcError(f"logic answered {len(reply.replies)} of {len(batch)} pushes")
        except Exception as exc:  # whatever it is, each waiting request gets it
            error = exc if isinstance(exc, RpcError) else RpcError(f"push batch failed: {exc!r}")
            log.warning("push batch failed", extra=kv(items=len(batch), error=str(error)))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), item_reply in zip(batch, reply.replies, strict=True):
            if not future.done():  # its HTTP request may have gone away
                future.set_result(item_reply)
