"""Serves the chat page, and ``/config.json`` telling the page where the api and websocket are.

``/config.json`` is ``{"apiUrl", "wsUrl", "wsUrls"}``: the configured ``[site] api_url`` and
``ws_url``, or, when empty, the host name the browser used for the page with the api's and
websocket's configured ports (``[api] bind``, ``[connect_websocket] bind`` and ``path``), so the page
works behind any host name.  Without ``[site] ws_url``, the websocket nodes that registered a
``public_url`` in etcd are handed out instead, live ones only: ``wsUrls`` lists them and ``wsUrl``
is one of them at random (spreading browsers over the nodes); the page moves to another one when
its node goes away.

Only files inside the site folder are served; no directory listings, no source files (the
original exposed both).  Unknown paths get ``index.html`` so client-side routes work, except
``/healthz`` and ``/readyz`` (the probes every module has; site has no metrics port by default, so
they are on its own, answered by its loop).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from aiohttp import web

from gochat_py.config import Settings, split_host_port
from gochat_py.discovery import ServiceWatcher, make_etcd_client
from gochat_py.health import Health
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.runtime import wait_for_stop_signal

log = logging.getLogger("gochat.site")

SITE_CONFIG = web.AppKey("site_config", dict)
SITE_ROOT = web.AppKey("site_root", Path)
WS_NODES = web.AppKey("ws_nodes", ServiceWatcher)
_NO_STORE = {"Cache-Control": "no-store"}


def live_ws_urls(watcher: ServiceWatcher | None) -> list[str]:
    """The public URLs of the websocket nodes registered now."""
    if watcher is None:
        return []
    return sorted({n.public_url for n in watcher.nodes.values() if n.server_type == "ws" and n.public_url})


async def config_json(request: web.Request) -> web.Response:
    config = request.app[SITE_CONFIG]
    ws_url = config["wsUrl"]
    live = [] if ws_url else live_ws_urls(request.app.get(WS_NODES))
    if not ws_url:
        ws_url = random.choice(live) if live else _derived_url(request, "ws", config["wsPort"], config["wsPath"])
    return web.json_response(
        {
            "apiUrl": config["apiUrl"] or _derived_url(request, "http", config["apiPort"]),
            "wsUrl": ws_url,
            "wsUrls": live or [ws_url],
        },
        headers={"Cache-Control": "no-cache"},
    )


def _derived_url(request: web.Request, scheme: str, port: int, path: str = "") -> str:
    """The page's own host name (as the browser sent it) with another port; https gives https/wss."""
    if request.scheme == "https":
        scheme += "s"
    host = request.url.host or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"module": "site", "alive": True, "checks": {"loop": "ok"}}, headers=_NO_STORE)


async def site_files_check(root: Path) -> str:
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"no index.html in {root}")
    return f"{root / 'index.html'} present"


async def readyz(request: web.Request) -> web.Response:
    try:
        checks = {"loop": "ok", "files": await site_files_check(request.app[SITE_ROOT])}
    except OSError as exc:
        body = {"module": "site", "ready": False, "checks": {"loop": "ok", "files": str(exc)}, "failed": ["files"]}
        return web.json_response(body, status=503, headers=_NO_STORE)
    return web.json_response({"module": "site", "ready": True, "checks": checks}, headers=_NO_STORE)


async def static_file(request: web.Request) -> web.StreamResponse:
    root = request.app[SITE_ROOT]
    relative = request.match_info.get("path", "").lstrip("/")
    candidate = (root / relative).resolve()
    if relative and candidate.is_file() and candidate.is_relative_to(root):
        return web.FileResponse(candidate, headers={"Cache-Control": "no-cache"})
    return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(settings: Settings) -> web.Application:
    root = settings.site_root.resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"no index.html in the site folder {root}")
    app = web.Application()
    app[SITE_ROOT] = root
    app[SITE_CONFIG] = {
        "apiUrl": settings.site.api_url,
        "wsUrl": settings.site.ws_url,
        "apiPort": split_host_port(settings.api.bind)[1],
        "wsPort": split_host_port(settings.connect_websocket.bind)[1],
        "wsPath": settings.connect_websocket.path,
    }
    app.router.add_get("/config.json", config_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/{path:.*}", static_file)
    return app


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    watcher: ServiceWatcher | None = None
    etcd = None
    if not settings.site.ws_url:
        etcd = make_etcd_client(settings.etcd)
        watcher = ServiceWatcher(etcd, settings.etcd, settings.etcd.connect_service)
        await watcher.start()
        app[WS_NODES] = watcher
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_host_port(settings.site.bind)
    await web.TCPSite(runner, host, port).start()
    root = settings.site_root.resolve()
    serve_metrics(settings, "site", Health("site", {"files": lambda: site_files_check(root)}))
    log.info("ready", extra=kv(bind=f"{host}:{port}", root=str(settings.site_root)))
    await wait_for_stop_signal()
    await runner.cleanup()
    if watcher is not None and etcd is not None:
        await watcher.stop()
        await etcd.close()
    log.info("stopped")
