"""Health: probes answered from another thread by running on the module's loop; a stuck loop, a
failing check and a hanging one each give 503 saying so."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from gochat_py.health import Health

TIMEOUT = 0.3


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A module's loop, running in its own thread as the real one runs beside the probe server."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


async def _ok() -> str:
    return "ok"


async def _refused() -> str:
    raise ConnectionError("Connection refused")


async def _hangs() -> str:
    await asyncio.sleep(30)
    return "never"


def test_alive_while_the_loop_answers_and_not_while_it_is_stuck(loop: asyncio.AbstractEventLoop) -> None:
    health = Health("logic")
    health.attach(loop, TIMEOUT)
    status, body = health.alive()
    assert status == 200 and body["alive"] is True and body["checks"]["loop"].startswith("answered in")
    loop.call_soon_threadsafe(time.sleep, 3 * TIMEOUT)  # something blocks the loop
    started = time.monotonic()
    status, body = health.alive()
    assert time.monotonic() - started < 2 * TIMEOUT + 0.5  # the probe itself does not hang
    assert status == 503 and body == {
        "module": "logic",
        "alive": False,
        "checks": {"loop": f"no answer within {TIMEOUT} s"},
    }


def test_ready_names_every_check_and_the_failed_ones(loop: asyncio.AbstractEventLoop) -> None:
    health = Health("task", {"redis": _refused, "database": _ok, "etcd": _hangs})
    health.attach(loop, TIMEOUT)
    status, body = health.ready()
    assert status == 503
    assert body["ready"] is False and body["failed"] == ["etcd", "redis"]
    assert body["checks"] == {
        "loop": "ok",
        "redis": "ConnectionError: Connection refused",
        "database": "ok",
        "etcd": f"no answer within {TIMEOUT} s",
    }


def test_ready_when_every_check_passes(loop: asyncio.AbstractEventLoop) -> None:
    health = Health("api", {"logic": _ok})
    health.attach(loop, TIMEOUT)
    assert health.ready() == (200, {"module": "api", "ready": True, "checks": {"loop": "ok", "logic": "ok"}})
