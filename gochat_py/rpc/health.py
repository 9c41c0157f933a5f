"""The standard gRPC health service (grpc.health.v1) on every gRPC server of gochat-py, and the
call that tells a client whether a node answers.

It is what ``/readyz`` of api and the connect nodes asks a logic node: a real call through the
same channel, mutual TLS included, so a certificate the node refuses shows up with gRPC's reason
(a bare connection check would only say "transient failure").  It touches neither Redis nor the
database: the caller's readiness does not hang on logic's dependencies.  A node reports
NOT_SERVING from the moment it starts to stop.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio


async def add_health_service(server: grpc.aio.Server) -> aio.HealthServicer:
    """Adds the service to ``server``, SERVING; call ``enter_graceful_shutdown()`` when stopping."""
    servicer = aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return servicer


async def serving(channel: grpc.aio.Channel, timeout: float) -> None:
    """Returns when the node says SERVING; raises (AioRpcError, or RuntimeError) otherwise."""
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise RuntimeError(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
