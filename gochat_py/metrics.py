"""Prometheus metrics: what each process counts, and the loopback endpoint that serves them.

The metric objects live in this module's own registry (creating them opens nothing); a process
serves them only when :func:`serve_metrics` is called, on the address of its module in
``[metrics]``, beside its ``/healthz`` and ``/readyz`` (gochat_py.health).  Hot paths count per
batch or per message, never per socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from gochat_py.config import Settings, split_host_port
from gochat_py.health import Health
from gochat_py.logs import kv

log = logging.getLogger("gochat.metrics")
REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Gauge("gochat_connections", "client sockets joined on this connect node", registry=REGISTRY)
JOINS = Counter("gochat_joins", "joins accepted by this connect node", registry=REGISTRY)
V2_COMMANDS = Counter(
    "gochat_v2_commands", "protocol-v2 commands answered, by command and outcome", ["cmd", "outcome"], registry=REGISTRY
)
JOINS_REFUSED = Counter("gochat_joins_refused", "joins refused (bad token, logic unreachable)", registry=REGISTRY)
FRAMES_OUT = Counter("gochat_frames_out", "frames written to client sockets, by op", ["op"], registry=REGISTRY)
SLOW_CONSUMERS = Counter(
    "gochat_slow_consumers", "sockets closed because their send buffer was full", registry=REGISTRY
)
MESSAGES_IN = Counter("gochat_messages_in", "messages accepted onto the queue, by op", ["op"], registry=REGISTRY)
REPLICA_WAIT_SHORT = Counter(
    "gochat_replica_wait_short",
    "pushes refused because fewer Redis replicas than redis.wait_replicas acknowledged them in time",
    registry=REGISTRY,
)
DELIVERED = Counter("gochat_queue_delivered", "queue entries delivered by task, by op", ["op"], registry=REGISTRY)
QUEUE_PENDING = Gauge("gochat_queue_pending", "entries read by task but not acknowledged", registry=REGISTRY)
QUEUE_LAG = Gauge("gochat_queue_lag", "entries in the queue no task has read yet", registry=REGISTRY)
API_IN_FLIGHT = Gauge(
    "gochat_api_requests_in_flight", "requests the api is handling (inside their handlers)", registry=REGISTRY
)
ARCHIVED = Counter("gochat_history_archived", "messages written to the database by task", registry=REGISTRY)
BACKLOG_SENT = Counter(
    "gochat_backlog_frames", "kept messages sent to joining sockets (resume, offline delivery)", registry=REGISTRY
)
ADMISSION_WAIT = Histogram(
    "gochat_admission_wait_seconds",
    "time logic held pushes back because the queue's backlog was over queue.max_backlog",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
QUEUE_TO_SOCKET = Histogram(
    "gochat_queue_to_socket_seconds",
    "from a message entering the queue (its stream entry id) to its frame being written, per message",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PACE_LAG = Gauge(
    "gochat_pace_lag_seconds",
    "median lag of a sample of this node's websocket clients (ping round trip less its lowest)",
    registry=REGISTRY,
)
PACE_HOLD = Histogram(
    "gochat_pace_hold_seconds",
    "time a delivery was held because this node's clients fell behind (connect.pace_lag)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "gochat_rpc_seconds",
    "duration of gRPC calls made by this process, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request in progress never holds the process up at exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not events worth a log line."""


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def endpoint_app(health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """/healthz and /readyz from ``health``, everything else from Prometheus' own app."""
    metrics_app = make_wsgi_app(REGISTRY)
    probes = {"/healthz": health.alive, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        status, body = probe()
        data = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        headers.append(("Cache-Control", "no-store"))
        start_response("200 OK" if status == 200 else "503 Service Unavailable", headers)
        return [data]

    return app


def serve_metrics(settings: Settings, module: str, health: Health | None = None) -> int | None:
    """Serves /metrics, /healthz and /readyz for this module if it has an address in ``[metrics]``;
    returns the port.  Called from the module's loop: the probes run their checks there."""
    address = getattr(settings.metrics, module, "")
    if not address:
        return None
    health = health or Health(module)
    health.attach(asyncio.get_running_loop(), settings.metrics.probe_timeout)
    host, port = split_host_port(address)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("_Server", (_Server,), {"address_family": family})
    server = make_server(sockaddr[0], port, endpoint_app(health), server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    bound = server.server_port
    log.info("metrics served", extra=kv(address=f"{host}:{bound}"))
    return bound
