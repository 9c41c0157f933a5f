"""CPU and memory of the gochat processes, read from /proc (Linux).

A gochat process is one whose command line contains ``gochat_py --module`` or
``gochat-py --module``; its module is the word after ``--module``.  CPU is user + system time of
all its threads; RSS is ``VmRSS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MARKERS = ("gochat_py --module", "gochat-py --module")


@dataclass(frozen=True)
class Sample:
    pid: int
    name: str
    cpu_s: float
    rss_kib: int


def read_cmdline(pid: int, proc: Path = PROC) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def module_of(argv: list[str]) -> str | None:
    """The gochat module a command line runs, or None when it is not a gochat module process."""
    line = " ".join(argv)
    if not any(marker in line for marker in MARKERS):
        return None
    try:
        return argv[argv.index("--module") + 1]
    except (ValueError, IndexError):
        for part in argv:
            if part.startswith("--module="):
                return part.partition("=")[2]
    return "?"


def gochat_processes(proc: Path = PROC) -> dict[int, str]:
    """pid -> module name of every gochat module process on this machine."""
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            module = module_of(read_cmdline(int(entry.name), proc))
            if module is not None:
                found[int(entry.name)] = module
    return found


def parse_stat_cpu(stat: str) -> float:
    """utime + stime in seconds from the text of /proc/<pid>/stat (the name may hold spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def parse_status_rss(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample(pid: int, name: str, proc: Path = PROC) -> Sample | None:
    try:
        cpu = parse_stat_cpu((proc / str(pid) / "stat").read_text())
        rss = parse_status_rss((proc / str(pid) / "status").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return Sample(pid, name, cpu, rss)


def snapshot(pids: dict[int, str], proc: Path = PROC) -> dict[int, Sample]:
    out = {}
    for pid, name in pids.items():
        taken = sample(pid, name, proc)
        if taken is not None:
            out[pid] = taken
    return out


def compare(before: dict[int, Sample], after: dict[int, Sample], wall_s: float) -> list[dict[str, object]]:
    """Per process: CPU seconds used between the snapshots, % of one core, RSS then and now."""
    rows = []
    for pid, end in sorted(after.items(), key=lambda item: (item[1].name, item[0])):
        start = before.get(pid)
        cpu = end.cpu_s - start.cpu_s if start else None
        rows.append(
            {
                "pid": pid,
                "name": end.name,
                "cpu_s": None if cpu is None else round(cpu, 2),
                "cpu_pct": None if cpu is None or wall_s <= 0 else round(100 * cpu / wall_s, 1),
                "rss_kib_start": start.rss_kib if start else None,
                "rss_kib": end.rss_kib,
            }
        )
    return rows


def _socket_inodes_listening(port: int, proc: Path = PROC) -> set[str]:
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_pids(port: int, candidates: dict[int, str], proc: Path = PROC) -> set[int]:
    """Which of ``candidates`` listen on TCP ``port``."""
    inodes = {f"socket:[{inode}]" for inode in _socket_inodes_listening(port, proc)}
    found = set()
    if not inodes:
        return found
    for pid in candidates:
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    found.add(pid)
                    break
            except OSError:
                continue
    return found


def parent_pid(pid: int, proc: Path = PROC) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def system_processes(ports: list[int], proc: Path = PROC) -> tuple[dict[int, str], str]:
    """The gochat processes of the system under test, and how they were found.

    The processes listening on ``ports`` (api, websocket) are the system's; their siblings (the
    other modules started by the same ``gochat-py up`` or test harness) belong to it too.  When
    no listener is a gochat process, every gochat process on the machine is taken.
    """
    every = gochat_processes(proc)
    anchors: set[int] = set()
    for port in ports:
        anchors |= listening_pids(port, every, proc)
    if not anchors:
        return every, "all"
    parents = {parent_pid(pid, proc) for pid in anchors} - {None, 1, 0}
    chosen = {pid: name for pid, name in every.items() if pid in anchors or parent_pid(pid, proc) in parents}
    return chosen, "siblings of the listeners"


def machine_busy_jiffies(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0, 0
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def load_average(proc: Path = PROC) -> list[float]:
    try:
        return [float(v) for v in (proc / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []
