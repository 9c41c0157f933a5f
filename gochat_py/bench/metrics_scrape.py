"""The system's own Prometheus metrics, read just before and just after the measured window.

CPU per process (``procstats``) says *which* process spent the time; the counters every module
exports (``gochat_py/metrics.py``) say *on what*: how many RPC calls of which method and how
long they took, how many frames went out by op, how far the queue fell behind, whether slow
sockets were dropped.  The benchmark scrapes each process' ``/metrics`` once before the window
and once after it and reports the difference; gauges (connections, queue backlog) are also
sampled every :data:`SAMPLE_INTERVAL` seconds in between so their peak is seen.

Two layers: :func:`parse` and :func:`diff` (and the summary built from them) are pure functions
over the text exposition format, tested without sockets; :func:`fetch_texts` and
:class:`Watch` do the I/O.  A process that does not answer is skipped and listed, never an
error: metrics explain a run, they are not what it measures.

No metric names the process that exports it, so a target is named, in this order, by a
``name=`` prefix on the command line, by the module of the gochat process listening on its port
(from ``/proc``, like ``procstats``), by the module whose default metrics port it is, or by
``host:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gochat_py.bench import procstats
from gochat_py.bench.options import check_loopback_url
from gochat_py.config import MetricsSettings, split_host_port

# Seconds between the gauge samples taken during the window, and the limit of one scrape.
# Each scrape costs the scraped process about a millisecond of CPU, a negligible share of a
# window; a process slower to answer than the timeout is under too much load to be worth waiting.
SAMPLE_INTERVAL = 1.0
SCRAPE_TIMEOUT = 2.0

# Family names as gochat_py/metrics.py declares them (counters without ``_total``).
RPC = "gochat_rpc_seconds"
FRAMES_OUT = "gochat_frames_out"
MESSAGES_IN = "gochat_messages_in"
DELIVERED = "gochat_queue_delivered"
SLOW_CONSUMERS = "gochat_slow_consumers"
JOINS = "gochat_joins"
JOINS_REFUSED = "gochat_joins_refused"
CONNECTIONS = "gochat_connections"
QUEUE_LAG = "gochat_queue_lag"
QUEUE_PENDING = "gochat_queue_pending"
FAMILIES = (RPC, FRAMES_OUT, MESSAGES_IN, DELIVERED, SLOW_CONSUMERS, JOINS, JOINS_REFUSED, CONNECTIONS)
FAMILIES += (QUEUE_LAG, QUEUE_PENDING)

# The histogram is timed by the caller; every method a module calls is logic's except Deliver.
RPC_CALLEE = {"Deliver": "connect"}
OP_NAMES = {"2": "private", "3": "room", "4": "count", "5": "member list"}

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Histogram:
    """One labelled series of a histogram: cumulative bucket counts, ascending, ``+Inf`` last."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float


@dataclass
class Scrape:
    """The samples of one ``/metrics`` answer, by family name and label set."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)


@dataclass
class Delta:
    """What changed between two scrapes of one process.

    Counters and histograms are differences (a counter that went back means the process
    restarted: its value since the restart is taken, and ``reset`` says so); gauges are
    ``(end value, highest value seen)``.
    """

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    gauges: dict[str, dict[Labels, tuple[float, float]]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)
    reset: bool = False


# ---------------------------------------------------------------- pure: parse, diff, quantiles


def _labels(labels: dict[str, str], drop: str = "") -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def parse(text: str) -> Scrape:
    """Counters, gauges and histograms of a text exposition (``_created`` series are skipped:
    they are start times, not amounts).  Raises ValueError on text that is not the format."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            series = scrape.counters.setdefault(family.name, {})
            for sample in family.samples:
                if sample.name in (family.name, family.name + "_total"):
                    series[_labels(sample.labels)] = sample.value
        elif family.type == "gauge" and not family.name.endswith("_created"):
            series = scrape.gauges.setdefault(family.name, {})
            for sample in family.samples:
                if sample.name == family.name:
                    series[_labels(sample.labels)] = sample.value
        elif family.type == "histogram":
            buckets: dict[Labels, list[tuple[float, float]]] = {}
            counts: dict[Labels, float] = {}
            sums: dict[Labels, float] = {}
            for sample in family.samples:
                key = _labels(sample.labels, drop="le")
                if sample.name == family.name + "_bucket":
                    buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
                elif sample.name == family.name + "_count":
                    counts[key] = sample.value
                elif sample.name == family.name + "_sum":
                    sums[key] = sample.value
            scrape.histograms[family.name] = {
                key: Histogram(
                    tuple(sorted(bounds)), counts.get(key, bounds[-1][1] if bounds else 0.0), sums.get(key, 0.0)
                )
                for key, bounds in buckets.items()
            }
    return scrape


def _histogram_delta(before: Histogram | None, after: Histogram) -> tuple[Histogram, bool]:
    if before is None:
        return after, False
    if after.count < before.count or [b for b, _ in before.buckets] != [b for b, _ in after.buckets]:
        return after, after.count < before.count
    buckets = tuple((bound, n - old) for (bound, n), (_, old) in zip(after.buckets, before.buckets, strict=True))
    return Histogram(buckets, after.count - before.count, after.sum - before.sum), False


def diff(before: Scrape, after: Scrape, during: Iterable[Scrape] = ()) -> Delta:
    """The change from ``before`` to ``after``; ``during`` are gauge samples in between, for the
    highest value seen.  A series only in ``after`` started in the window and counts from 0."""
    delta = Delta()
    for name, series in after.counters.items():
        old = before.counters.get(name, {})
        out = delta.counters.setdefault(name, {})
        for key, value in series.items():
            change = value - old.get(key, 0.0)
            if change < 0:
                change, delta.reset = value, True
            out[key] = change
    for name, series in after.histograms.items():
        old_series = before.histograms.get(name, {})
        out_h = delta.histograms.setdefault(name, {})
        for key, hist in series.items():
            out_h[key], went_back = _histogram_delta(old_series.get(key), hist)
            delta.reset |= went_back
    peaks: dict[str, dict[Labels, float]] = {}
    for scrape in (before, *during, after):
        for name, series in scrape.gauges.items():
            seen = peaks.setdefault(name, {})
            for key, value in series.items():
                seen[key] = max(value, seen.get(key, value))
    for name, series in after.gauges.items():
        delta.gauges[name] = {key: (value, peaks[name][key]) for key, value in series.items()}
    return delta


def quantile(hist: Histogram, q: float) -> float | None:
    """Approximate ``q`` quantile, interpolated linearly inside its bucket (as Prometheus'
    ``histogram_quantile``); in the ``+Inf`` bucket, the highest finite bound."""
    if hist.count <= 0:
        return None
    rank = q * hist.count
    lower, below = 0.0, 0.0
    for bound, cumulative in hist.buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            if cumulative == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


# ---------------------------------------------------------------- pure: the summary section


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _by_op(series: dict[Labels, float]) -> dict[str, int]:
    ops = {dict(key).get("op", ""): int(value) for key, value in series.items() if value > 0}
    return dict(sorted(ops.items(), key=lambda item: (len(item[0]), item[0])))


def _plain(series: dict[Labels, float] | None) -> int:
    return int(series.get((), 0.0)) if series else 0


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def _gauge(delta: Delta, name: str) -> dict[str, float | int]:
    end, peak = delta.gauges.get(name, {}).get((), (0.0, 0.0))
    return {"end": _number(end), "max": _number(peak)}


def _timing(hist: Histogram) -> dict[str, Any]:
    return {
        "calls": int(hist.count),
        "mean_ms": _ms(hist.sum / hist.count),
        "p50_ms": _ms(quantile(hist, 0.5)),
        "p99_ms": _ms(quantile(hist, 0.99)),
        "total_s": round(hist.sum, 3),
    }


def _short_name(family: str) -> str:
    return family.removeprefix("gochat_").removesuffix("_seconds")


def process_section(name: str, delta: Delta) -> dict[str, Any]:
    """The figures of one process that explain where the time went, without raw series: RPC
    calls by method, frames and messages by op, and only the fields of the process' role (a
    connect node's joins and slow consumers, task's backlog)."""
    out: dict[str, Any] = {}
    rpc = {}
    for key, hist in delta.histograms.get(RPC, {}).items():
        if hist.count > 0:
            rpc[dict(key).get("method", "?")] = _timing(hist)
    if rpc:
        out["rpc"] = dict(sorted(rpc.items(), key=lambda item: -item[1]["total_s"]))
    waits = {}  # any other histogram of seconds (logic's admission wait, ...): same figures
    for family, series in sorted(delta.histograms.items()):
        for key, hist in series.items() if family != RPC else ():
            if hist.count > 0:
                label = ",".join(f"{k}={v}" for k, v in key)
                waits[_short_name(family) + (f"{{{label}}}" if label else "")] = _timing(hist)
    if waits:
        out["waits"] = waits
    for field_name, family in (("messages_in", MESSAGES_IN), ("delivered", DELIVERED), ("frames_out", FRAMES_OUT)):
        ops = _by_op(delta.counters.get(family, {}))
        if ops:
            out[field_name] = ops
    connections = _gauge(delta, CONNECTIONS)
    if name.startswith("connect") or delta.counters.get(FRAMES_OUT) or connections["max"]:
        out["joins"] = _plain(delta.counters.get(JOINS))
        out["joins_refused"] = _plain(delta.counters.get(JOINS_REFUSED))
        out["slow_consumers"] = _plain(delta.counters.get(SLOW_CONSUMERS))
        out["connections"] = connections
    lag, pending = _gauge(delta, QUEUE_LAG), _gauge(delta, QUEUE_PENDING)
    if name == "task" or delta.counters.get(DELIVERED) or "Deliver" in rpc or lag["max"] or pending["max"]:
        out["queue_lag"] = lag
        out["queue_pending"] = pending
    if delta.reset:
        out["reset"] = True
    return out


def _count(value: float) -> str:
    return f"{int(value):,}"


def _short_ms(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _ops_text(ops: dict[str, int]) -> str:
    return ", ".join(f"{OP_NAMES.get(op, 'op ' + op)} {_count(n)}" for op, n in ops.items())


def explain(processes: dict[str, dict[str, Any]], unreachable: Sequence[dict[str, str]] = ()) -> list[str]:
    """One readable line per finding: RPC methods by time spent (the caller's view), then what
    each process moved, then what could not be read."""
    lines = []
    calls = [
        (proc, method, row) for proc, section in processes.items() for method, row in section.get("rpc", {}).items()
    ]
    for proc, method, row in sorted(calls, key=lambda item: -item[2]["total_s"]):
        lines.append(
            f"{proc} → {RPC_CALLEE.get(method, 'logic')} {method}: {_count(row['calls'])} calls, "
            f"mean {_short_ms(row['mean_ms'])} ms, p99 ≈ {_short_ms(row['p99_ms'])} ms, {row['total_s']:.2f} s in all"
        )
    for proc, section in processes.items():
        for wait, row in section.get("waits", {}).items():
            lines.append(
                f"{proc} {wait}: {_count(row['calls'])} times, mean {_short_ms(row['mean_ms'])} ms,"
                f" p99 ≈ {_short_ms(row['p99_ms'])} ms, {row['total_s']:.2f} s in all"
            )
        if "messages_in" in section:
            ops = section["messages_in"]
            lines.append(f"{proc}: {_count(sum(ops.values()))} messages queued ({_ops_text(ops)})")
        if "queue_lag" in section:
            delivered = section.get("delivered", {})
            lag, pending = section["queue_lag"], section["queue_pending"]
            lines.append(
                f"{proc}: {_count(sum(delivered.values()))} queue entries delivered"
                + (f" ({_ops_text(delivered)})" if delivered else "")
                + f"; backlog at most {_count(lag['max'])} unread and {_count(pending['max'])} unacknowledged,"
                f" {_count(lag['end'])} and {_count(pending['end'])} at the end"
            )
        if "connections" in section:
            frames = section.get("frames_out", {})
            conns = section["connections"]
            lines.append(
                f"{proc}: {_count(sum(frames.values()))} frames out"
                + (f" ({_ops_text(frames)})" if frames else "")
                + f", {_count(section['joins'])} joins ({_count(section['joins_refused'])} refused),"
                f" {_count(section['slow_consumers'])} slow consumers dropped,"
                f" {_count(conns['end'])} connections (at most {_count(conns['max'])})"
            )
        if section.get("reset"):
            lines.append(f"{proc}: counters went back (restarted during the run); figures count from the restart")
    for entry in unreachable:
        lines.append(f"not scraped: {entry['url']} ({entry['error']})")
    return lines


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    url: str
    name: str = ""  # given on the command line as name=URL

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80


def default_entries() -> list[str]:
    """``/metrics`` of every module that serves metrics by default (``[metrics]`` defaults)."""
    defaults = MetricsSettings()
    return [f"http://{address}/metrics" for address in defaults.addresses().values() if address]


def default_names() -> dict[int, str]:
    """Default metrics port -> module, for naming a target no gochat process is seen on."""
    return {split_host_port(address)[1]: module for module, address in MetricsSettings().addresses().items() if address}


def parse_targets(entries: Iterable[str]) -> list[Target]:
    """``[name=]URL`` entries; loopback http only (TargetError otherwise); a bare ``host:port``
    gets ``http://`` and ``/metrics``."""
    targets = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        if not sep or not name.replace("_", "").replace("-", "").isalnum():
            name, url = "", entry
        if "://" not in url:
            url = f"http://{url}/metrics"
        targets.append(Target(check_loopback_url(url, ("http",)), name))
    return targets


def name_targets(
    targets: Sequence[Target], system: dict[int, str], proc: Path = procstats.PROC
) -> tuple[list[tuple[Target, str, int | None]], list[dict[str, str]]]:
    """(target, name, pid) of each target that may belong to the system under test, and the
    ones skipped because the gochat process on their port is another system's (a default port
    can be held by a system other than the one ``--api`` points at)."""
    every = procstats.gochat_processes(proc)
    fallback = default_names()
    named, skipped = [], []
    taken: set[str] = set()
    for target in targets:
        pids = sorted(procstats.listening_pids(target.port, every, proc)) if every else []
        pid = pids[0] if pids else None
        if pid is not None and pid not in system:
            skipped.append(
                {"url": target.url, "error": f"pid {pid} ({every[pid]}) is not part of the system under test"}
            )
            continue
        parts = urlsplit(target.url)
        name = target.name or (
            every[pid] if pid is not None else fallback.get(target.port, f"{parts.hostname}:{target.port}")
        )
        if name in taken:
            name = f"{name}@{target.port}"
        taken.add(name)
        named.append((target, name, pid))
    return named, skipped


# ---------------------------------------------------------------- I/O


async def fetch_texts(urls: Sequence[str], timeout: float = SCRAPE_TIMEOUT) -> dict[str, str | Exception]:
    """The body of each URL, or the exception that kept it from being read."""

    async def one(session: aiohttp.ClientSession, url: str) -> str:
        async with session.get(url) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return await response.text()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        results = await asyncio.gather(*(one(session, url) for url in urls), return_exceptions=True)
    return {
        url: result if isinstance(result, str | Exception) else RuntimeError(repr(result))
        for url, result in zip(urls, results, strict=True)
    }


def _reason(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect ({type(error.os_error).__name__})"
    return f"{type(error).__name__}: {error}".strip().rstrip(":")


async def scrape_all(urls: Sequence[str], timeout: float = SCRAPE_TIMEOUT) -> dict[str, Scrape | str]:
    """Each URL parsed, or the reason it could not be (unreachable, not the text format)."""
    out: dict[str, Scrape | str] = {}
    for url, body in (await fetch_texts(urls, timeout)).items():
        if isinstance(body, Exception):
            out[url] = _reason(body)
            continue
        try:
            out[url] = parse(body)
        except Exception as exc:  # whatever answered is not worth failing the run for
            out[url] = f"not the Prometheus text format: {exc}"
    return out


class Watch:
    """Scrapes the targets at :meth:`begin` and :meth:`end` of the window, and their gauges every
    :data:`SAMPLE_INTERVAL` seconds in between; :meth:`end` returns the summary's ``metrics``."""

    def __init__(self, entries: Sequence[str], system: dict[int, str], interval: float = SAMPLE_INTERVAL) -> None:
        self.targets = parse_targets(entries)
        self.system = system
        self.interval = interval
        self.named: list[tuple[Target, str, int | None]] = []
        self.unreachable: list[dict[str, str]] = []
        self.first: dict[str, Scrape] = {}
        self.during: dict[str, list[Scrape]] = {}
        self.started = 0.0
        self.sampler: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        named, self.unreachable = await asyncio.to_thread(name_targets, self.targets, self.system)
        results = await scrape_all([target.url for target, _, _ in named])
        for target, name, pid in named:
            result = results[target.url]
            if isinstance(result, str):
                self.unreachable.append({"url": target.url, "error": result})
            else:
                self.named.append((target, name, pid))
                self.first[target.url] = result
                self.during[target.url] = []
        self.started = time.monotonic()
        if self.named:
            self.sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for url, result in (await scrape_all(list(self.first))).items():
                if isinstance(result, Scrape):  # a missed sample only loses a peak
                    self.during[url].append(Scrape(gauges=result.gauges))

    def cancel(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()

    async def end(self) -> dict[str, Any]:
        self.cancel()
        if self.sampler is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.sampler
        window = time.monotonic() - self.started
        results = await scrape_all(list(self.first))
        processes: dict[str, dict[str, Any]] = {}
        for target, name, pid in self.named:
            result = results[target.url]
            if isinstance(result, str):
                self.unreachable.append({"url": target.url, "error": f"gone by the end: {result}"})
                continue
            section = {"url": target.url, "pid": pid}
            section.update(process_section(name, diff(self.first[target.url], result, self.during[target.url])))
            processes[name] = section
        return {
            "window_s": round(window, 3),
            "gauge_samples": max((len(samples) + 2 for samples in self.during.values()), default=0),
            "processes": processes,
            "unreachable": self.unreachable,
            "explain": explain(processes, self.unreachable),
        }
