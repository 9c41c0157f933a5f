"""Finding the gochat processes and their CPU and memory, on a made-up /proc."""

from __future__ import annotations

import os
from pathlib import Path

from gochat_py.bench import procstats
from gochat_py.bench.procstats import Sample, compare, module_of, parse_stat_cpu, parse_status_rss

TICKS = procstats.CLOCK_TICKS


def fake_process(proc: Path, pid: int, argv: list[str], utime: int, stime: int, rss: int, ppid: int = 1) -> None:
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} (python3 x) " + " ".join(fields) + "\n")
    (d / "status").write_text(f"Name:\tpython3\nVmPeak:\t1 kB\nVmRSS:\t{rss} kB\nThreads:\t4\n")


def test_module_of() -> None:
    assert module_of(["/usr/bin/python3", "-m", "gochat_py", "--module", "logic"]) == "logic"
    assert (
        module_of(["/venv/bin/python", "/venv/bin/gochat-py", "--module", "connect_websocket"]) == "connect_websocket"
    )
    assert module_of(["gochat-py", "--module", "task"]) == "task"
    assert module_of(["python3", "-m", "gochat_py", "up"]) is None
    assert module_of(["python3", "-m", "pytest", "tests"]) is None
    assert module_of([]) is None


def test_parse_stat_and_status() -> None:
    stat = "42 (a name) with) S 1 " + " ".join(["0"] * 9) + f" {3 * TICKS} {TICKS} 0 0"
    assert parse_stat_cpu(stat) == 4.0
    assert parse_status_rss("Name:\tx\nVmRSS:\t  1234 kB\n") == 1234
    assert parse_status_rss("Name:\tkthread\n") == 0


def test_finds_gochat_processes_and_samples(tmp_path: Path) -> None:
    fake_process(tmp_path, 10, ["python3", "-m", "gochat_py", "--module", "logic"], TICKS, TICKS, 5000)
    fake_process(tmp_path, 11, ["python3", "-m", "gochat_py", "--module", "api"], 0, TICKS // 2, 3000)
    fake_process(tmp_path, 12, ["redis-server", "*:6379"], 50, 50, 9000)
    (tmp_path / "self").mkdir()
    found = procstats.gochat_processes(tmp_path)
    assert found == {10: "logic", 11: "api"}
    snap = procstats.snapshot(found, tmp_path)
    assert snap[10] == Sample(10, "logic", 2.0, 5000)
    assert snap[11].cpu_s == 0.5


def test_compare_cpu_percent_and_rss() -> None:
    before = {1: Sample(1, "connect_websocket", 10.0, 1000), 2: Sample(2, "task", 1.0, 500)}
    after = {1: Sample(1, "connect_websocket", 12.0, 1500), 2: Sample(2, "task", 1.5, 500), 3: Sample(3, "api", 1, 9)}
    rows = {row["name"]: row for row in compare(before, after, 4.0)}
    assert rows["connect_websocket"]["cpu_s"] == 2.0 and rows["connect_websocket"]["cpu_pct"] == 50.0
    assert rows["connect_websocket"]["rss_kib_start"] == 1000 and rows["connect_websocket"]["rss_kib"] == 1500
    assert rows["task"]["cpu_pct"] == 12.5
    assert rows["api"]["cpu_s"] is None  # appeared during the window: no start sample


def test_system_processes_falls_back_to_all(tmp_path: Path) -> None:
    fake_process(tmp_path, 20, ["python3", "-m", "gochat_py", "--module", "logic"], 0, 0, 1)
    chosen, how = procstats.system_processes([7070], tmp_path)
    assert chosen == {20: "logic"} and how == "all"


def test_system_processes_siblings_of_listener(tmp_path: Path) -> None:
    ours = ["python3", "-m", "gochat_py", "--module"]
    fake_process(tmp_path, 30, [*ours, "api"], 0, 0, 1, ppid=100)
    fake_process(tmp_path, 31, [*ours, "task"], 0, 0, 1, ppid=100)
    fake_process(tmp_path, 40, [*ours, "task"], 0, 0, 1, ppid=200)  # another system's
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   0: 0100007F:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n"
    (tmp_path / "net" / "tcp").write_text(header + row)  # 0x1B9E = 7070, state 0A = LISTEN
    os.symlink("socket:[777]", tmp_path / "30" / "fd" / "5")
    chosen, how = procstats.system_processes([7070], tmp_path)
    assert chosen == {30: "api", 31: "task"}
    assert how == "siblings of the listeners"


def test_real_proc_is_readable() -> None:
    busy, total = procstats.machine_busy_jiffies()
    assert total >= busy >= 0
    me = procstats.sample(os.getpid(), "me")
    assert me is not None and me.rss_kib > 0
