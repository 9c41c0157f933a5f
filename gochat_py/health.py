"""Liveness and readiness of a module, for orchestrators: ``/healthz`` and ``/readyz`` beside
``/metrics`` (see :func:`gochat_py.metrics.serve_metrics`).

The metrics server answers from a thread of its own, so a probe reaches the process even when its
event loop is stuck; that is what ``/healthz`` tests: a no-op scheduled on the loop must run within
``[metrics] probe_timeout``.  ``/readyz`` runs the module's checks on the loop (each bounded by the
same timeout): whether it is registered in etcd, whether Redis, the database or a logic node
answer.  Both reply 200 with a small JSON body naming every check and its result, or 503 naming
what failed.  A change of readiness is logged once, not once per probe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gochat_py.logs import kv

log = logging.getLogger("gochat.health")

# A check returns a short word on what answered, or raises with the reason it failed.
Check = Callable[[], Awaitable[str]]
# Of the probe timeout, what a check that waits on a peer itself gives it: it then gives up first
# and says why, instead of the bare timeout.
PEER_SHARE = 0.8


class Health:
    """The checks of one module, run on its loop on behalf of the metrics server's threads."""

    def __init__(self, module: str, checks: dict[str, Check] | None = None) -> None:
        self.module = module
        self.checks = dict(checks or {})
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timeout = 2.0
        self._ready: bool | None = None  # last readiness seen, to log changes only
        self._lock = threading.Lock()

    def attach(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop, self.timeout = loop, timeout

    def _on_loop(self, coroutine: Awaitable[Any], timeout: float) -> Any:
        assert self.loop is not None, "attach() first"
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        finally:
            future.cancel()  # a stuck loop never runs it: do not let it pile up there

    def alive(self) -> tuple[int, dict[str, Any]]:
        """Thread-side: 200 when the loop ran a no-op within the timeout."""
        started = time.monotonic()
        try:
            self._on_loop(asyncio.sleep(0), self.timeout)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:  # RuntimeError: the loop is closed
            reason = f"no answer within {self.timeout} s" if not isinstance(exc, RuntimeError) else str(exc)
            return 503, {"module": self.module, "alive": False, "checks": {"loop": reason}}
        answered = f"answered in {(time.monotonic() - started) * 1000:.1f} ms"
        return 200, {"module": self.module, "alive": True, "checks": {"loop": answered}}

    def ready(self) -> tuple[int, dict[str, Any]]:
        """Thread-side: 200 when every check passed, else 503 with the failed ones under ``failed``."""
        try:
            results = self._on_loop(self._run_checks(), self.timeout + 1)
        except (concurrent.futures.TimeoutError, RuntimeError):
            results = {"loop": (False, f"no answer within {self.timeout + 1} s")}
        failed = sorted(name for name, (ok, _) in results.items() if not ok)
        body: dict[str, Any] = {
            "module": self.module,
            "ready": not failed,
            "checks": {name: detail for name, (_, detail) in results.items()},
        }
        if failed:
            body["failed"] = failed
        self._log_change(not failed, body)
        return (503 if failed else 200), body

    async def _run_checks(self) -> dict[str, tuple[bool, str]]:
        async def one(check: Check) -> tuple[bool, str]:
            try:
                return True, await asyncio.wait_for(check(), self.timeout)
            except TimeoutError:
                return False, f"no answer within {self.timeout} s"
            except Exception as exc:
                return False, f"{type(exc).__name__}: {exc}"[:300]

        names = list(self.checks)
        outcomes = await asyncio.gather(*(one(self.checks[name]) for name in names))
        return {"loop": (True, "ok"), **dict(zip(names, outcomes, strict=True))}

    def _log_change(self, ready: bool, body: dict[str, Any]) -> None:
        with self._lock:
            changed, self._ready = self._ready != ready, ready
        if not changed:
            return
        if ready:
            log.info("ready for traffic", extra=kv(checks=",".join(body["checks"])))
        else:
            failed = body["failed"]
            log.warning(
                "not ready",
                extra=kv(failed=",".join(failed), error="; ".join(f"{n}: {body['checks'][n]}" for n in failed)),
            )


def redis_check(redis: Any) -> Check:
    """Redis answers a PING (``redis`` is a redis.asyncio client)."""

    async def check() -> str:
        await redis.ping()
        return "ok"

    return check


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> str:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return "ok"

    return check
