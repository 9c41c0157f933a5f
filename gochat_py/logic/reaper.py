"""Forgets the sockets of connect nodes that died without saying goodbye.

A node killed with SIGKILL cannot send Disconnect for its users, so they would stay in room
member lists and counts for ever (the original's ghost members).  Every logic process watches
the connect nodes in etcd; a server id that holds members in Redis but has been missing from
etcd for ``grace`` seconds is purged.  Purging is idempotent, so two logic processes doing it at
once is harmless.  Nothing is purged while the watcher's view is not settled (etcd unreachable,
or back for less than a lease time, during which live nodes whose keys etcd lost register again).

The sweep runs every ``interval`` and at once when the watcher sees a node leave, so a dead
node's users are gone at most ``lease_ttl + grace`` (plus etcd's own expiry delay) after it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from gochat_py.discovery import ServiceWatcher
from gochat_py.logic.sessions import SessionStore
from gochat_py.logs import kv

log = logging.getLogger("gochat.logic.reaper")
SWEEP_INTERVAL = 1.0  # seconds between two looks at the nodes holding members


async def reap_dead_nodes(
    watcher: ServiceWatcher,
    sessions: SessionStore,
    purge: Callable[[str], Awaitable[None]],
    grace: float,
    interval: float = SWEEP_INTERVAL,
) -> None:
    missing_since: dict[str, float] = {}
    changed = asyncio.Event()
    watcher.on_change(lambda _nodes: changed.set())
    await watcher.ready.wait()
    timeout = interval
    failing = False
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        changed.clear()
        timeout = interval
        if not watcher.settled():
            missing_since.clear()  # the grace starts once the view of etcd can be trusted again
            continue
        try:
            holding = await sessions.nodes_with_members()
            live = {node.server_id for node in watcher.nodes.values()}
            now = time.monotonic()
            for server_id in list(missing_since):
                if server_id in live or server_id not in holding:
                    missing_since.pop(server_id)
            for server_id in holding - live:
                first = missing_since.setdefault(server_id, now)
                left = first + grace - now
                if left <= 0.01:
                    await purge(server_id)
                    missing_since.pop(server_id, None)
                else:
                    timeout = min(timeout, left)  # wake when the grace is over, not a sweep later
            if failing:
                log.info("dead node sweep works again")
            failing = False
        except Exception as exc:
            if not failing:  # once per outage, not once a second
                log.warning("dead node sweep failed", extra=kv(error=repr(exc)))
            failing = True
