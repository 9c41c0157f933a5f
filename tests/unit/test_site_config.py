"""The site's /config.json: configured addresses, or the page's own host name with the configured ports."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gochat_py.config import load_settings
from gochat_py.discovery import Node
from gochat_py.site.server import WS_NODES, create_app


async def config_for(host: str, **env: str) -> dict[str, str]:
    settings = load_settings(env="dev", environ=env)
    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/config.json", headers={"Host": host})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-cache"
        return await response.json()


@pytest.mark.parametrize(
    ("host", "name"),
    [("127.0.0.1:8080", "127.0.0.1"), ("chat.example.org", "chat.example.org"), ("[::1]:8080", "[::1]")],
)
async def test_empty_addresses_follow_the_host_name_the_page_was_loaded_by(host: str, name: str) -> None:
    ws = f"ws://{name}:7000/ws"
    assert await config_for(host) == {"apiUrl": f"http://{name}:7070", "wsUrl": ws, "wsUrls": [ws]}


async def test_derived_addresses_use_the_configured_ports_and_path() -> None:
    config = await config_for(
        "box:9000",
        GOCHAT_API__BIND="0.0.0.0:17070",
        GOCHAT_CONNECT_WEBSOCKET__BIND="0.0.0.0:17000",
        GOCHAT_CONNECT_WEBSOCKET__PATH="/chat",
    )
    assert config == {"apiUrl": "http://box:17070", "wsUrl": "ws://box:17000/chat", "wsUrls": ["ws://box:17000/chat"]}


async def test_configured_addresses_are_passed_on_unchanged() -> None:
    config = await config_for(
        "anything:8080", GOCHAT_SITE__API_URL="https://api.example.org", GOCHAT_SITE__WS_URL="wss://ws.example.org/ws"
    )
    assert config == {
        "apiUrl": "https://api.example.org",
        "wsUrl": "wss://ws.example.org/ws",
        "wsUrls": ["wss://ws.example.org/ws"],
    }


class Registered:
    """What site.server reads of a ServiceWatcher: the nodes registered now."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {node.server_id: node for node in nodes}


async def test_live_websocket_nodes_with_a_public_url_are_handed_out() -> None:
    settings = load_settings(env="dev", environ={})
    app = create_app(settings)
    app[WS_NODES] = Registered(  # type: ignore[assignment]
        Node("10.0.0.1:6912", "ws-a", "ws", "wss://a.example.org/ws"),
        Node("10.0.0.2:6912", "ws-b", "ws", "wss://b.example.org/ws"),
        Node("10.0.0.3:6914", "tcp-c", "tcp", "tcp.example.org:7001"),
        Node("10.0.0.4:6912", "ws-d", "ws"),  # no public URL: not for browsers
    )
    seen = set()
    async with TestClient(TestServer(app)) as client:
        for _ in range(30):
            config = await (await client.get("/config.json")).json()
            assert config["wsUrls"] == ["wss://a.example.org/ws", "wss://b.example.org/ws"]
            seen.add(config["wsUrl"])
    assert seen == {"wss://a.example.org/ws", "wss://b.example.org/ws"}  # spread over the nodes
    app = create_app(settings)
    app[WS_NODES] = Registered()  # type: ignore[assignment]
    async with TestClient(TestServer(app)) as client:
        config = await (await client.get("/config.json", headers={"Host": "box:8080"})).json()
    assert config["wsUrls"] == ["ws://box:7000/ws"]  # none registered: the derived address
