"""The page and several websocket nodes: /config.json hands out the live nodes' public URLs from
discovery, and a page whose node dies moves to another one and goes on (resuming by since)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

from playwright.async_api import Browser, expect

from tests.e2e import test_browser
from tests.e2e.harness import ApiClient, Cluster, eventually, free_port
from tests.e2e.test_browser import CLUSTER_ENV, log, new_room, open_page, page_url, sign_in, unique  # noqa: F401

browser = test_browser.browser  # the fixture: Debian's Chromium, headless


def site_config(cluster: Cluster) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.site_port}/config.json", timeout=5) as response:
        return json.load(response)


def start_node(cluster: Cluster, name: str) -> tuple[Any, str]:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    process = cluster.start_module(
        "connect_websocket",
        name=name,
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{port}",
        GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=f"127.0.0.1:{free_port()}",
        GOCHAT_CONNECT_WEBSOCKET__PUBLIC_URL=url,
    )
    return process, url


async def test_the_page_is_handed_live_nodes_and_moves_when_its_node_dies(cluster: Cluster, browser: Browser) -> None:
    (first, first_url), (second, second_url) = await asyncio.gather(
        asyncio.to_thread(start_node, cluster, "connect_websocket_a"),
        asyncio.to_thread(start_node, cluster, "connect_websocket_b"),
    )
    both = sorted([first_url, second_url])
    # the cluster's own node registered no public URL: only these two are handed to browsers
    await eventually(lambda: site_config(cluster)["wsUrls"] == both, 15, "both nodes in /config.json")
    assert site_config(cluster)["wsUrl"] in both

    room = new_room()
    page = await open_page(browser, page_url(cluster, room=room))
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    await sign_in(page, unique("pat"))
    await expect(page.locator("#conn-state")).to_have_text("connected")
    assert opened and opened[0] in both
    victim, survivor = (first, second_url) if opened[0] == first_url else (second, first_url)

    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("sender"))
        await api.post("/push/pushRoom", {"authToken": token, "roomId": room, "msg": "before"})
        await expect(log(page).locator(".msg-text")).to_have_text(["before"])
        victim.kill()
        killed = time.monotonic()
        await api.post("/push/pushRoom", {"authToken": token, "roomId": room, "msg": "while moving"})
        await expect(page.locator("#conn-state")).to_have_text("connected", timeout=30_000)
        moved = time.monotonic() - killed
        # the first socket after the death went to the other node (not back to the dead address)
        assert opened[1] == survivor, opened
        await api.post("/push/pushRoom", {"authToken": token, "roomId": room, "msg": "after"})
        await expect(log(page).locator(".msg-text")).to_have_text(["before", "while moving", "after"])
    print(f"\npage on a new node {moved:.1f} s after its node was killed")
    # once the dead node's lease has ended, /config.json no longer names it
    await eventually(lambda: site_config(cluster)["wsUrls"] == [survivor], 30, "the dead node gone from /config.json")
    await page.context.close()
