"""The site's /config.json: configured addresses, or the page's own host name with the configured ports."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gochat_py.config import load_settings
from gochat_py.site.server import create_app


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
    assert await config_for(host) == {"apiUrl": f"http://{name}:7070", "wsUrl": f"ws://{name}:7000/ws"}


async def test_derived_addresses_use_the_configured_ports_and_path() -> None:
    config = await config_for(
        "box:9000",
        GOCHAT_API__BIND="0.0.0.0:17070",
        GOCHAT_CONNECT_WEBSOCKET__BIND="0.0.0.0:17000",
        GOCHAT_CONNECT_WEBSOCKET__PATH="/chat",
    )
    assert config == {"apiUrl": "http://box:17070", "wsUrl": "ws://box:17000/chat"}


async def test_configured_addresses_are_passed_on_unchanged() -> None:
    config = await config_for(
        "anything:8080", GOCHAT_SITE__API_URL="https://api.example.org", GOCHAT_SITE__WS_URL="wss://ws.example.org/ws"
    )
    assert config == {"apiUrl": "https://api.example.org", "wsUrl": "wss://ws.example.org/ws"}
