"""What the coordinator of every bench run shares (``gochat-py bench MODE`` and ``bench soak``):
the run id, the run's time bound, the first errors, the summary's head, its users, and running it
on uvloop to one JSON summary."""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import secrets
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from gochat_py.bench.api import Api, bounded_map, register_users
from gochat_py.bench.children import ChildLink, raise_file_limit
from gochat_py.bench.progress import Progress
from gochat_py.bench.stamp import check_run_id

SUMMARY_VERSION = 1


def source_commit() -> dict[str, Any]:
    """The commit of the gochat-py tree the benchmark runs from, when it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


class RunCoordinator:
    """The parts of a coordinator that do not depend on what the run measures."""

    max_errors = 10  # the first errors say what went wrong; the rest would only bloat the summary
    summary: dict[str, Any]

    def __init__(self, opts: Any, max_seconds: float) -> None:
        self.opts = opts
        self.run_id = check_run_id(opts.run_id or secrets.token_hex(4))
        self.rng = random.Random(self.run_id)
        self.progress = Progress(opts.progress)
        self.context = multiprocessing.get_context("spawn")
        self.links: list[ChildLink] = []
        self.errors: list[str] = []
        self.deadline = time.monotonic() + max_seconds

    def head(self, tool: str, before: dict[str, Any], after: dict[str, Any], unkept: tuple[str, ...]) -> dict[str, Any]:
        """The summary's first fields: ``before`` the label, ``after`` the run id, and the
        options but ``unkept`` as ``params``."""
        return {
            "tool": tool,
            "version": SUMMARY_VERSION,
            **before,
            "label": self.opts.label,
            "run_id": self.run_id,
            **after,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source_commit(),
            "machine": machine(),
            "params": {k: v for k, v in asdict(self.opts).items() if k not in unkept},
        }

    def _error(self, text: str) -> None:
        if len(self.errors) < self.max_errors:
            self.errors.append(text)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def register(self, api: Api, prefix: str, ids_concurrency: int = 0) -> tuple[list[str], list[int]]:
        """Users ``<prefix>_<run id>_<n>``: their tokens, and their ids when ``ids_concurrency``."""
        names = [f"{prefix}_{self.run_id}_{n}" for n in range(self.opts.users)]
        started = time.monotonic()
        tokens = await register_users(api, names, self.opts.register_concurrency, self.remaining, self.progress)
        user_ids = await bounded_map(ids_concurrency, tokens, api.user_id) if ids_concurrency else []
        self.summary["register"] = {"users": len(tokens), "time_s": round(time.monotonic() - started, 2)}
        return tokens, user_ids


def run_to_summary(main: Awaitable[dict[str, Any]], output: str) -> tuple[dict[str, Any], str]:
    """Runs a coordinator on uvloop with all the sockets it may; the summary, and its JSON text
    (also written to ``output`` when set)."""
    import uvloop

    raise_file_limit()
    summary = uvloop.run(main)
    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n")
    return summary, text
