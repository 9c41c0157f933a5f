"""The harness's own promise: what a crashed run left behind is removed, a live run's is not."""

from __future__ import annotations

import os
import subprocess
import time

from tests.multihost.netns import ETC_NETNS_DIR, PREFIX, Network, ip, namespaces, remove_leftovers


def dead_pid() -> int:
    """A pid no process has now (one that just exited)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_leftovers_of_a_crashed_run_are_removed_and_a_live_runs_are_kept(network: Network) -> None:
    crashed = f"{PREFIX}{dead_pid()}_1-h1"
    ip("netns", "add", crashed)
    (ETC_NETNS_DIR / crashed).mkdir(parents=True, exist_ok=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", crashed, "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while not ip("netns", "pids", crashed).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ip("netns", "pids", crashed).stdout.split() == [str(orphan.pid)]
        removed = remove_leftovers()
        assert crashed in removed
        assert crashed not in namespaces()
        assert not (ETC_NETNS_DIR / crashed).exists()
        assert orphan.wait(10) == -9  # its processes were killed
        # this run's network (the live owner is this process) is left alone
        assert network.tag.startswith(f"{PREFIX}{os.getpid()}_")
        assert network.bridge_namespace in namespaces()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        ip("netns", "delete", crashed, check=False)
