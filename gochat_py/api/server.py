"""Runs the api module."""

from __future__ import annotations

import logging

from aiohttp import web

from gochat_py.api.app import create_app
from gochat_py.config import Settings, split_host_port
from gochat_py.discovery import ServiceWatcher, make_etcd_client
from gochat_py.health import PEER_SHARE, Health
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.rpc.client import LogicClient
from gochat_py.rpc.credentials import load_rpc_tls
from gochat_py.runtime import wait_for_stop_signal
from gochat_py.tls import server_context

log = logging.getLogger("gochat.api")


async def serve(settings: Settings) -> None:
    rpc_tls = load_rpc_tls(settings.rpc)
    etcd_settings = settings.etcd
    etcd = make_etcd_client(etcd_settings)
    watcher = ServiceWatcher(etcd, etcd_settings, etcd_settings.logic_service)
    await watcher.start()
    logic = LogicClient(watcher, settings.rpc, rpc_tls)
    runner = web.AppRunner(create_app(logic, settings.api), access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_host_port(settings.api.bind)
    tls = server_context(settings.api.tls_cert, settings.api.tls_key)
    site = web.TCPSite(runner, host, port, shutdown_timeout=5, ssl_context=tls)
    await site.start()

    async def logic_reachable() -> str:
        return f"reachable at {await logic.reachable(settings.metrics.probe_timeout * PEER_SHARE)}"

    serve_metrics(settings, "api", Health("api", {"etcd": watcher.check, "logic": logic_reachable}))
    log.info("ready", extra=kv(bind=f"{host}:{port}", tls=tls is not None))
    await wait_for_stop_signal()
    log.info("stopping")
    await runner.cleanup()  # stops accepting, lets in-flight requests finish
    await watcher.stop()
    await logic.close()
    await etcd.close()
    log.info("stopped")
