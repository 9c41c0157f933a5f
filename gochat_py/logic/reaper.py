"""Forgets the sockets of connect nodes that died without saying goodbye.

A node killed with SIGKILL cannot send Disconnect for its users, so they would stay in room
member lists and counts for ever (the original's ghost members).  Every logic process watches
the connect nodes in etcd; a server id that holds members in Redis but has been missing from
etcd for ``grace`` seconds is purged.  Purging is idempotent, so two logic processes doing it at
once is harmless.  Nothing is purged while etcd itself is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gochat_py.discovery import ServiceWatcher
from gochat_py.logic.sessions import SessionStore
from gochat_py.logs import kv

log = logging.getLogger("gochat.logic.reaper")


async def reap_dead_nodes(
    watcher: ServiceWatcher,
    sessions: SessionStore,
    purge: Callable[[str], Awaitable[None]],
    grace: float,
    interval: float = 1.0,
) -> None:
    missing_since: dict[str, float] = {}
    await watcher.ready.wait()
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - watcher.last_sync > max(grace, interval * 3):
            continue  # our view of etcd is stale: a live node could look dead
        try:
            holding = await sessions.nodes_with_members()
            live = {node.server_id for node in watcher.nodes.values()}
            now = time.monotonic()
            for server_id in holding - live:
                first = missing_since.setdefault(server_id, now)
                if now - first >= grace:
                    await purge(server_id)
                    missing_since.pop(server_id, None)
            for server_id in list(missing_since):
                if server_id in live or server_id not in holding:
                    missing_since.pop(server_id)
        except Exception as exc:
            log.warning("dead node sweep failed", extra=kv(error=repr(exc)))
