"""Micro-benchmark: CPU per received frame of the bench's two websocket clients.

    python -m gochat_py.bench.ws_micro --sockets 50 --frames 2000 --batch 1 --batch 8

The floor server (``floor.py``: a ``websockets`` server in a process of its own, like the connect
layer) accepts ``--sockets`` sockets and writes ``--frames`` pre-encoded op 3 frames, stamped
like the real ones, to every socket, ``--batch`` frames per write.  This process holds the
sockets with the same ``ClientWorker`` code a bench client process runs (so the figure includes
the bench's own counting, ``Counter.on_frame``), once per client kind, and divides the CPU time
it used (user + system, from the first frame pushed to the last one counted) by the frames it
received.  Only the client's CPU is counted; the server runs in another process.  No gochat
system is needed, and it runs for a few seconds: it is meant to be cheap to rerun.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
from typing import Any

from gochat_py.bench.children import raise_file_limit, start_child, stop_children
from gochat_py.bench.clients import ClientPlan, ClientWorker, SocketSpec
from gochat_py.bench.floor import floor_main
from gochat_py.bench.options import WS_CLIENTS

ROOM_ID = 4242


async def measure(client: str, sockets: int, frames: int, batch: int, run_id: str = "micro") -> dict[str, Any]:
    """One run: CPU µs per received frame of ``client`` ("lean" or "websockets")."""
    floor = start_child(
        multiprocessing.get_context("spawn"), "floor", floor_main, ((sockets, ROOM_ID, run_id, 120.0, batch),)
    )
    try:
        _, port = await asyncio.wait_for(floor.messages.get(), 30)  # ("listening", port)
        plan = ClientPlan(
            index=0,
            run_id=run_id,
            ws_urls=[f"ws://127.0.0.1:{port}/ws"],
            tcp=("127.0.0.1", 0),
            sockets=[SocketSpec(token="micro", room_id=ROOM_ID) for _ in range(sockets)],
            messages=frames,
            ws_client=client,
            connect_timeout=30,
        )
        worker = ClientWorker(plan, pipe=None)  # type: ignore[arg-type]  # only its socket code is used
        limit = asyncio.Semaphore(64)
        await asyncio.gather(*(worker._open(i, limit) for i in range(sockets)))
        if worker.failed:
            raise RuntimeError(f"{worker.failed} sockets failed to open: {worker.errors}")
        floor.send(("announce", 30.0))
        await asyncio.wait_for(floor.messages.get(), 40)  # ("announced", sockets)
        await asyncio.wait_for(worker.counter.all_ready.wait(), 30)
        expected = sockets * frames
        counter = worker.counter
        cpu_start, wall_start = time.process_time(), time.monotonic()
        floor.send(("go", frames))
        deadline = wall_start + 120
        while counter.unique < expected and time.monotonic() < deadline and not worker.disconnected:
            await asyncio.sleep(0.005)
        cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
        worker.stopping = True
        await worker._close_all()
        return {
            "client": client,
            "sockets": sockets,
            "frames_per_socket": frames,
            "batch": batch,
            "received": counter.unique,
            "lost": expected - counter.unique,
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "cpu_us_per_frame": round(cpu * 1e6 / counter.unique, 2) if counter.unique else None,
        }
    finally:
        await stop_children([floor], [], 10)


async def run(clients: list[str], sockets: int, frames: int, batches: list[int], repeat: int) -> None:
    print(f"client process pid {os.getpid()}; CPU is this process' user + system time")
    for batch in batches:
        for client in clients:
            figures = [await measure(client, sockets, frames, batch) for _ in range(repeat)]
            per_frame = sorted(f["cpu_us_per_frame"] or float("inf") for f in figures)
            lost = sum(f["lost"] for f in figures)
            print(
                f"batch {batch:>3} frames/write  {client:<10}  median {statistics.median(per_frame):5.2f} µs/frame  "
                f"(min {per_frame[0]:.2f}, max {per_frame[-1]:.2f}; {repeat} runs of {sockets} × {frames} frames, "
                f"lost {lost})",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gochat_py.bench.ws_micro", description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--frames", type=int, default=2000, help="frames per socket")
    parser.add_argument("--batch", type=int, action="append", help="frames per server write (repeatable; default 1)")
    parser.add_argument("--client", choices=WS_CLIENTS, action="append", help="default: both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    args = parser.parse_args(argv)
    raise_file_limit()
    import uvloop

    uvloop.run(run(args.client or list(WS_CLIENTS), args.sockets, args.frames, args.batch or [1], args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
