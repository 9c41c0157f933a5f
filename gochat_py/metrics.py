"""Prometheus metrics: what each process counts, and the loopback endpoint that serves them.

The metric objects live in this module's own registry (creating them opens nothing); a process
serves them only when :func:`serve_metrics` is called, on the address of its module in
``[metrics]``.  Hot paths count per batch or per message, never per socket.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gochat_py.config import Settings, split_host_port
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


def serve_metrics(settings: Settings, module: str) -> int | None:
    """Serves /metrics for this module if it has an address in ``[metrics]``; returns the port."""
    address = getattr(settings.metrics, module, "")
    if not address:
        return None
    host, port = split_host_port(address)
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound = server.server_port
    log.info("metrics served", extra=kv(address=f"{host}:{bound}"))
    return bound
