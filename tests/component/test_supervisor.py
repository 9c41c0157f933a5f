"""The supervisor of ``gochat-py up`` on real processes, with a clock the test moves."""

from __future__ import annotations

import io
import sys

from gochat_py.config import LauncherSettings
from gochat_py.launcher import ManagedProcess
from gochat_py.supervisor import Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_process_that_keeps_exiting_is_restarted_with_backoff_then_given_up() -> None:
    process = ManagedProcess("crasher", [sys.executable, "-c", "raise SystemExit(3)"], sink=io.StringIO()).start()
    clock, said = Clock(), []
    supervisor = Supervisor([process], LauncherSettings(restart_limit=3), clock=clock, say=said.append)
    pids = [process.pid]

    process.proc.wait(30)
    assert supervisor.check() is None
    assert said == ["crasher died (exit code 3) after 0.0 s; restarting it in 0.5 s (attempt 1)"]
    clock.now += 0.4
    assert supervisor.check() is None and len(said) == 1  # not due yet: nothing started
    clock.now += 0.1
    assert supervisor.check() is None
    pids.append(process.pid)
    assert said[-1] == f"crasher restarted, pid {process.pid} (restart 1 of crasher since up started)"

    process.proc.wait(30)
    clock.now += 2
    assert supervisor.check() is None
    assert said[-1] == "crasher died (exit code 3) after 2.0 s; restarting it in 1 s (attempt 2)"
    clock.now += 1
    supervisor.check()
    pids.append(process.pid)
    assert len(set(pids)) == 3
    assert supervisor.summary() == "crasher 2"

    process.proc.wait(30)
    reason = supervisor.check()
    assert reason == "crasher keeps dying: 3 deaths within 60 s ([launcher] restart_limit = 3), the last exit code 3"


def test_a_stopped_process_is_not_restarted() -> None:
    process = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], sink=io.StringIO())
    supervisor = Supervisor([process.start()], LauncherSettings(), clock=Clock(), say=print)
    process.stop()
    assert supervisor.check() is None
    assert not process.running() and supervisor.summary() is None
