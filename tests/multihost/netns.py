"""Test hosts as Linux network namespaces on one private bridge.

A :class:`Network` is a namespace holding a bridge (so nothing touches the root namespace's
interfaces or routes) and one namespace per host, joined to the bridge by a veth pair, with its
own address from a private range, loopback up and a default route to the bridge's address.  The
bridge namespace has no link to anything else and does not forward, so no packet leaves the test
network.  Processes run in a host with ``ip netns exec``; the test's own code runs in a host
through :meth:`Host.call`, on a thread that has joined the host's namespace (a thread's network
namespace is its own, and threads it starts inherit it).

Namespaces are named ``<PREFIX><pid of the test run>_<network number>-<host>``: :func:`remove_leftovers` deletes
those of runs whose process is gone (a crashed or killed earlier run), never a live run's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "gcmh"
NETNS_DIR = Path("/run/netns")
# ``ip netns exec NAME`` mounts the files of /etc/netns/NAME over those of /etc: each host gets a
# hosts file naming every test host and a resolv.conf with no name server, so a lookup (Python's
# HTTP servers look their own address up) is answered from the file at once instead of waiting
# for a DNS server this network cannot reach.
ETC_NETNS_DIR = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_network_numbers = itertools.count(1)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def pids_in(namespace: str) -> list[int]:
    result = ip("netns", "pids", namespace, check=False)
    return [int(p) for p in result.stdout.split()]


def kill_all_in(namespace: str) -> list[int]:
    """SIGKILL to every process in the namespace (a host losing power); returns their pids."""
    killed = pids_in(namespace)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids_in(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def _owner_alive(name: str) -> bool:
    pid = name[len(PREFIX) :].partition("-")[0].partition("_")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_namespace(name: str) -> None:
    kill_all_in(name)
    ip("netns", "delete", name, check=False)
    shutil.rmtree(ETC_NETNS_DIR / name, ignore_errors=True)


def remove_leftovers() -> list[str]:
    """Deletes the namespaces (and kills their processes) that earlier runs of this harness left
    behind when they crashed; returns their names."""
    left = [n for n in namespaces() if n.startswith(PREFIX) and not _owner_alive(n)]
    for name in left:
        remove_namespace(name)
    return left


def _join_namespace(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL("libc.so.6", use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


class Host:
    """One test host: a namespace with one address."""

    def __init__(self, network: Network, name: str, address: str) -> None:
        self.network = network
        self.name = name
        self.address = address
        self.namespace = f"{network.tag}-{name}"
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def call(self, function: Callable[..., T], *args: Any, timeout: float | None = 300) -> T:
        """Runs ``function(*args)`` in this host's network namespace (on a thread of its own that
        joined it) and returns its result: every socket it opens is this host's."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4,
                thread_name_prefix=f"netns-{self.name}",
                initializer=_join_namespace,
                initargs=(str(NETNS_DIR / self.namespace),),
            )
        return self._executor.submit(function, *args).result(timeout)

    def pids(self) -> list[int]:
        return pids_in(self.namespace)

    def power_off(self) -> list[int]:
        """Every process on the host is killed at once; its address stays up (so peers get a
        refused connection, as from a host whose programs died; see :meth:`unplug`)."""
        return kill_all_in(self.namespace)

    def unplug(self) -> None:
        """The host's link goes down: peers' packets to it vanish, connections time out."""
        ip("-n", self.namespace, "link", "set", "eth0", "down")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Network:
    """A private /24 with a bridge; hosts get .11, .12, ... in the order they are added."""

    def __init__(self, subnet: str = "10.231.0") -> None:
        self.subnet = subnet
        self.tag = f"{PREFIX}{os.getpid()}_{next(_network_numbers)}"
        self.bridge_namespace = f"{self.tag}-br"
        self.gateway = f"{subnet}.1"
        self.hosts: dict[str, Host] = {}

    def create(self) -> Network:
        remove_leftovers()
        ip("netns", "add", self.bridge_namespace)
        br = ("-n", self.bridge_namespace)
        ip(*br, "link", "set", "lo", "up")
        ip(*br, "link", "add", "br0", "type", "bridge")
        ip(*br, "addr", "add", f"{self.gateway}/24", "dev", "br0")
        ip(*br, "link", "set", "br0", "up")
        return self

    def add_host(self, name: str) -> Host:
        host = Host(self, name, f"{self.subnet}.{11 + len(self.hosts)}")
        ip("netns", "add", host.namespace)
        port = f"v{len(self.hosts)}"
        ip(
            "-n",
            self.bridge_namespace,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        ip("-n", self.bridge_namespace, "link", "set", port, "master", "br0", "up")
        inside = ("-n", host.namespace)
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        # a host has a default route: a wildcard bind advertises the address it leads out of
        ip(*inside, "route", "add", "default", "via", self.gateway)
        self.hosts[name] = host
        self._write_etc()
        return host

    def _write_etc(self) -> None:
        names = "".join(f"{h.address}\t{h.name}\n" for h in self.hosts.values())
        for host in self.hosts.values():
            etc = ETC_NETNS_DIR / host.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n{names}")
            (etc / "resolv.conf").write_text("# a test network: no name server\n")

    def destroy(self) -> None:
        for host in self.hosts.values():
            host.close()
            remove_namespace(host.namespace)
        remove_namespace(self.bridge_namespace)
        self.hosts.clear()
