"""Keeps the processes of ``gochat-py up`` running: a process that dies is started again.

A crash (a bug hit by one request, the OOM killer, an operator's stray ``kill``) should cost a
few seconds of one module, not the whole system.  But a module that cannot run (a port taken
since, a broken database) would otherwise be restarted for ever and hide the problem, so one
that dies ``restart_limit`` times within ``restart_window`` seconds stops everything, with a
line that says which and why.  Restarts wait longer each time (``restart_delay`` doubling up to
``restart_max_delay``) so a crash loop does not eat the machine; a process that then ran for
``restart_window`` seconds counts as healthy again and its next restart is quick.

:class:`RestartPolicy` is the pure arithmetic (times in, decisions out); :class:`Supervisor`
applies it to real processes and is polled by ``up``'s main loop.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gochat_py.config import LauncherSettings

if TYPE_CHECKING:
    from gochat_py.launcher import ManagedProcess


@dataclass(frozen=True)
class Restart:
    """Start the process again after ``delay`` seconds; ``attempt`` counts deaths since it was healthy."""

    delay: float
    attempt: int


@dataclass(frozen=True)
class GiveUp:
    """Too many deaths in the window: the reason, for the operator."""

    reason: str


@dataclass
class RestartPolicy:
    """Backoff and death limit for one process; every time comes from the caller's clock."""

    settings: LauncherSettings
    attempt: int = 0
    restarts: int = 0  # in total, for the summary
    _deaths: deque[float] = field(default_factory=deque)

    def died(self, now: float, started_at: float) -> Restart | GiveUp:
        """The process started at ``started_at`` has died at ``now``: what to do."""
        s = self.settings
        if now - started_at >= s.restart_window:
            self.attempt = 0  # it ran long enough to count as healthy
        self._deaths.append(now)
        while self._deaths and self._deaths[0] <= now - s.restart_window:
            self._deaths.popleft()
        if len(self._deaths) >= s.restart_limit:
            deaths = len(self._deaths)
            return GiveUp(
                f"{deaths} deaths within {s.restart_window:g} s ([launcher] restart_limit = {s.restart_limit})"
            )
        self.attempt += 1
        self.restarts += 1
        return Restart(min(s.restart_delay * 2 ** (self.attempt - 1), s.restart_max_delay), self.attempt)


def describe_exit(returncode: int | None) -> str:
    """``exit code 3`` or ``killed by SIGKILL``: how a process ended, as an operator reads it."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _say(line: str) -> None:
    print(f"gochat-py: {line}", file=sys.stderr, flush=True)


class Supervisor:
    """Restarts the given processes when they die; :meth:`check` is called every half second or so.

    Restarts are scheduled, never slept on, so Ctrl-C and the other processes are served while a
    module waits for its turn.
    """

    def __init__(
        self,
        processes: Sequence[ManagedProcess],
        settings: LauncherSettings,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = _say,
    ) -> None:
        self.processes = list(processes)
        self.settings = settings
        self.clock = clock
        self.say = say
        self.policies = {id(p): RestartPolicy(settings) for p in self.processes}
        self._due: dict[int, float] = {}  # id(process) -> when it is started again
        self._started = {id(p): clock() for p in self.processes}  # on this clock, for "ran long enough"

    def check(self) -> str | None:
        """Handles deaths and due restarts; returns why everything must stop, or None."""
        now = self.clock()
        for process in self.processes:
            key, policy = id(process), self.policies[id(process)]
            if key in self._due:
                if now >= self._due[key]:
                    del self._due[key]
                    try:
                        process.start()
                    except OSError as exc:  # its program removed or unreadable since: no point retrying
                        return f"{process.name} cannot be restarted: {exc}"
                    self._started[key] = now
                    self.say(
                        f"{process.name} restarted, pid {process.pid}"
                        f" (restart {policy.restarts} of {process.name} since up started)"
                    )
                continue
            if process.running() or process.expected_exit:
                continue
            how = describe_exit(process.proc.returncode if process.proc else None)
            ran = now - self._started[key]
            decision = policy.died(now, self._started[key])
            if isinstance(decision, GiveUp):
                return f"{process.name} keeps dying: {decision.reason}, the last {how}"
            self.say(
                f"{process.name} died ({how}) after {ran:.1f} s;"
                f" restarting it in {decision.delay:g} s (attempt {decision.attempt})"
            )
            self._due[key] = now + decision.delay
        return None

    def summary(self) -> str | None:
        """``task 2, redis 1``: restarts per process, or None when nothing was restarted."""
        counts = [f"{p.name} {self.policies[id(p)].restarts}" for p in self.processes if self.policies[id(p)].restarts]
        return ", ".join(counts) or None
