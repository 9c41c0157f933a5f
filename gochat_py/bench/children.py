"""The bench's child processes (client processes, the floor server) and the pipes to them.

A coordinator starts each child (``multiprocessing``, spawn) with :func:`start_child`; its
:class:`ChildLink` reads what the child reports as the event loop sees it arrive: ``("opening",
opened, ready)``, ``("connected", info)``, ``("progress", unique, duplicated, disconnected,
last_ns[, per-node disconnects])``, ``("result", info)``; anything else is queued in
``messages``.  In the child, :class:`PipeCommands` hands each command of the coordinator to
``on_command`` from the event loop, and :func:`run_child` runs its work on uvloop with every
socket the machine allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import time
from collections.abc import Awaitable, Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from gochat_py.bench.progress import Progress

# ---------------------------------------------------------------------- the child's side


def raise_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_child(work: Callable[[], Awaitable[None]], pipe: Connection) -> None:
    """The body of every child process: all the sockets it may, uvloop, and the pipe closed at
    the end whatever happens (the coordinator reads that as the process being done)."""
    raise_file_limit()
    try:
        import uvloop

        uvloop.run(work())
    except KeyboardInterrupt:
        pass
    finally:
        pipe.close()


class PipeCommands:
    """The child's end of the pipe: every command goes to :meth:`on_command` as it arrives; a
    closed pipe counts as ``("stop",)``, after which nothing more is read."""

    pipe: Connection

    def listen(self) -> None:
        asyncio.get_running_loop().add_reader(self.pipe.fileno(), self._on_readable)
        os.set_blocking(self.pipe.fileno(), True)  # the loop made it non-blocking; big results must not fail

    def _on_readable(self) -> None:
        while self.pipe.poll():
            try:
                command = self.pipe.recv()
            except EOFError:
                command = ("stop",)
            self.on_command(command)
            if command[0] == "stop":
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())
                return

    def on_command(self, command: tuple) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------- the coordinator's side


def spread(items: list[Any], parts: int) -> list[list[int]]:
    """Indices of ``items`` dealt round-robin into ``parts`` lists (empty lists dropped)."""
    dealt: list[list[int]] = [[] for _ in range(parts)]
    for index in range(len(items)):
        dealt[index % parts].append(index)
    return [d for d in dealt if d]


class ChildLink:
    """One client (or floor) process and what it last reported."""

    def __init__(self, name: str, process: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        self.name = name
        self.process = process
        self.pipe = pipe
        self.opened = 0
        self.ready = 0
        self.connected: dict[str, Any] | None = None
        self.unique = 0
        self.duplicated = 0
        self.disconnected = 0
        self.disconnected_by_node: list[int] = []
        self.last_ns = 0
        self.result: dict[str, Any] | None = None
        self.messages: asyncio.Queue[tuple] = asyncio.Queue()
        self.eof = False

    def on_readable(self) -> None:
        try:
            while self.pipe.poll():
                message = self.pipe.recv()
                kind = message[0]
                if kind == "opening":
                    self.opened, self.ready = message[1], message[2]
                elif kind == "connected":
                    self.connected = message[1]
                    self.opened, self.ready = self.connected["opened"], self.connected["ready"]
                elif kind == "progress":
                    self.unique, self.duplicated, self.disconnected, self.last_ns = message[1:5]
                    if len(message) > 5:  # the benchmark's clients add per-node disconnects
                        self.disconnected_by_node = message[5]
                elif kind == "result":
                    self.result = message[1]
                else:
                    self.messages.put_nowait(message)
        except (EOFError, OSError):
            self.eof = True
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.pipe.fileno())

    def send(self, message: tuple) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.pipe.send(message)


def start_child(context: Any, name: str, target: Any, args: tuple) -> ChildLink:
    """A client (or floor) process started with ``target(*args, pipe)``, its end of the pipe
    read by this event loop."""
    parent_end, child_end = context.Pipe()
    process = context.Process(target=target, args=(*args, child_end), name=name, daemon=True)
    process.start()
    child_end.close()
    link = ChildLink(name, process, parent_end)
    asyncio.get_running_loop().add_reader(parent_end.fileno(), link.on_readable)
    os.set_blocking(parent_end.fileno(), True)
    return link


async def stop_children(links: list[ChildLink], reporting: list[ChildLink], timeout: float) -> None:
    """Tells every child to stop, waits (at most ``timeout``) for ``reporting`` to send their
    results, then for every process to exit; one still alive then is terminated.  Pipes are
    closed."""
    for link in links:
        link.send(("stop",))
    deadline = time.monotonic() + timeout
    while any(link.result is None and not link.eof for link in reporting) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for link in links:
        await asyncio.to_thread(link.process.join, max(0.1, deadline - time.monotonic()))
        if link.process.is_alive():
            link.process.terminate()
            await asyncio.to_thread(link.process.join, 5)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(link.pipe.fileno())
        link.pipe.close()


def bench_pids(links: Iterable[ChildLink]) -> dict[int, str]:
    """pid -> name of the bench's own processes: this coordinator and its children."""
    pids = {os.getpid(): "bench:coordinator"}
    pids.update({link.process.pid: f"bench:{link.name}" for link in links if link.process.pid})
    return pids


async def wait_connected(
    links: list[ChildLink],
    total: int,
    progress: Progress,
    remaining: Callable[[], float],
    error: Callable[[str], None],
    failure: type[Exception],
    nudge: Callable[[int, int], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Shows the connect phase until every child reported ``("connected", info)`` or ended, and
    returns the infos (their errors go to ``error``); ``nudge(opened, ready)`` is awaited on every
    round; ``failure`` is raised when the run's time ran out or a child died on the way."""
    while not all(link.connected is not None or link.eof for link in links):
        if remaining() <= 0:
            raise failure("clients did not finish connecting within --max-seconds")
        opened, ready = sum(link.opened for link in links), sum(link.ready for link in links)
        progress.update("connect", ready, total, f"opened {opened}")
        if nudge is not None:
            await nudge(opened, ready)
        await asyncio.sleep(0.1)
    if any(link.connected is None for link in links):
        raise failure("a client process died while connecting")
    infos = [link.connected for link in links if link.connected]
    progress.update("connect", sum(i["ready"] for i in infos), total, force=True)
    for info in infos:
        for text in info["errors"]:
            error(text)
    return infos


def results_of(links: list[ChildLink], error: Callable[[str], None]) -> list[dict[str, Any]]:
    """The results the children sent (their errors go to ``error``, and so does a missing one)."""
    results = [link.result for link in links if link.result is not None]
    if len(results) < len(links):
        error(f"{len(links) - len(results)} client process(es) sent no result")
    for result in results:
        for text in result["errors"]:
            error(text)
    return results
