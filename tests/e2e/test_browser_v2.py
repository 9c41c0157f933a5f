"""The chat page on protocol v2: one websocket for every room and private conversation, messages sent
over it with acknowledgements (pending, sent, failed and retried; each stored and shown once, also
across a killed connect node), presence and typing.

Same setup as test_browser.py (its fixtures and helpers): headless Chromium, several people, the
whole system as real processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.e2e import test_browser
from tests.e2e.harness import ApiClient, Cluster, free_port
from tests.e2e.test_browser import (
    CLUSTER_ENV,  # noqa: F401  (read by the cluster fixture: the same site settings)
    expect_members,
    join,
    log,
    new_room,
    open_page,
    page_url,
    send,
    sign_in,
    unique,
)

browser = test_browser.browser  # the fixture: Debian's Chromium, headless


class Sockets:
    """Every websocket a page opens from now on, and the commands it sends on them."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.sent: list[dict[str, Any]] = []
        page.on("websocket", self._opened)

    def _opened(self, ws: Any) -> None:
        self.urls.append(ws.url)
        ws.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        body = json.loads(payload)
        if isinstance(body, dict):
            self.sent.append(body)

    def commands(self, name: str) -> list[dict[str, Any]]:
        return [body for body in self.sent if body.get("cmd") == name]

    def hellos(self) -> list[dict[str, Any]]:
        return [body for body in self.sent if "v" in body and "authToken" in body]


# Records in window.mostCopies the most messages with the given text the log ever showed at once.
WATCH_COPIES = """(text) => {
  window.mostCopies = 0;
  const count = () => {
    const copies = [...document.querySelectorAll('#messages .msg-text')].filter((n) => n.textContent === text);
    window.mostCopies = Math.max(window.mostCopies, copies.length);
  };
  new MutationObserver(count).observe(document.getElementById('messages'), { childList: true, subtree: true });
}"""


def messages_with(page: Page, text: str):
    return page.locator("#messages .msg", has=page.locator(".msg-text", has_text=re.compile(f"^{re.escape(text)}$")))


async def open_room(page: Page, room: int) -> None:
    await page.get_by_label("Room", exact=True).fill(str(room))
    await page.get_by_role("button", name="Open", exact=True).click()
    await expect(page.locator("#conv-title")).to_have_text(f"Room {room}")


def room_tab(page: Page, room: int):
    return page.locator(f'#conversations .conv-room[data-room-id="{room}"]')


async def test_two_rooms_and_a_private_chat_share_one_websocket(cluster: Cluster, browser: Browser) -> None:
    first, second = new_room(), new_room()
    ann_name, bob_name, cat_name = unique("ann"), unique("bob"), unique("cat")
    ann = await open_page(browser, page_url(cluster, room=first))
    sockets = Sockets(ann)
    http_sends: list[str] = []
    ann.on("request", lambda r: http_sends.append(r.url) if "/push/push" in r.url else None)
    await sign_in(ann, ann_name)
    await expect(ann.locator("#conn-state")).to_have_text("connected")
    bob = await join(browser, page_url(cluster, room=first), bob_name)
    cat = await join(browser, page_url(cluster, room=second), cat_name)

    # presence: the subscribe's snapshot, then join events
    await expect_members(ann, ann_name, bob_name, me=ann_name)
    await open_room(ann, second)
    await expect(ann).to_have_url(re.compile(rf"#room={second}$"))
    await expect_members(ann, ann_name, cat_name, me=ann_name)
    await expect_members(cat, ann_name, cat_name, me=cat_name)
    await expect(room_tab(ann, first)).to_be_visible()  # the first room stays open beside it
    await expect_members(bob, ann_name, bob_name, me=bob_name)  # ann is still in the first room

    # both rooms' messages arrive: the shown one in the log, the other as an unread count
    await send(bob, "hello first room")
    await send(cat, "hello second room")
    await expect(log(ann).locator(".msg-text")).to_have_text(["hello second room"])
    await expect(room_tab(ann, first).locator(".badge")).to_have_text("1 unread")
    await expect(ann).to_have_title("(1) gochat")

    # a private message beside them
    await bob.locator("#members").get_by_role("button", name=ann_name).click()
    await send(bob, "psst, ann")
    await expect(log(bob).locator(".msg-text")).to_have_text(["psst, ann"])
    await expect(log(bob).last).to_have_attribute("data-status", "sent")
    private = ann.locator("#conversations .conv-private", has_text=bob_name)
    await expect(private.locator(".badge")).to_have_text("1 unread")
    await expect(ann).to_have_title("(2) gochat")

    await room_tab(ann, first).click()
    await expect(ann.locator("#conv-title")).to_have_text(f"Room {first}")
    await expect(log(ann).locator(".msg-text")).to_have_text(["hello first room"])
    await expect(room_tab(ann, first).locator(".badge")).to_have_count(0)
    await ann.evaluate(WATCH_COPIES, "ann in the first room")
    await send(ann, "ann in the first room")
    await expect(log(ann).locator(".msg-text")).to_have_text(["hello first room", "ann in the first room"])
    mine = log(ann).last
    await expect(mine).to_have_attribute("data-status", "sent")
    await expect(mine).to_have_attribute("data-id", re.compile(r"^\d+-\d+$"))
    # its echo (the message event) came too, before or after the result: still one copy, all along
    mine_id = await mine.get_attribute("data-id")
    await ann.wait_for_function("([room, id]) => state.rooms.get(room).lastId === id", arg=[first, mine_id])
    assert await ann.evaluate("window.mostCopies") == 1
    await expect(log(bob).locator(".msg-text")).to_have_text(["psst, ann"])  # bob is in the private view
    await bob.locator("#conversations .conv-room").click()
    await expect(log(bob).locator(".msg-text")).to_have_text(["hello first room", "ann in the first room"])

    await private.click()
    await expect(log(ann).locator(".msg-text")).to_have_text(["psst, ann"])
    await expect(ann).to_have_title("gochat")
    await send(ann, "hi bob, privately")
    await expect(log(ann).last).to_have_attribute("data-status", "sent")
    await bob.locator("#conversations .conv-private", has_text=ann_name).click()
    await expect(log(bob).locator(".msg-text")).to_have_text(["psst, ann", "hi bob, privately"])

    # the echo of ann's own room message came too: still shown once; the second room is still live
    await room_tab(ann, first).click()
    await expect(log(ann).locator(".msg-text")).to_have_text(["hello first room", "ann in the first room"])
    await send(cat, "second room again")
    await expect(room_tab(ann, second).locator(".badge")).to_have_text("1 unread")
    await room_tab(ann, second).click()
    await expect(log(ann).locator(".msg-text")).to_have_text(["hello second room", "second room again"])

    # leaving: cat's window closes (a leave event); ann leaves the first room (bob sees it)
    await cat.context.close()
    await expect_members(ann, ann_name, me=ann_name)
    await ann.get_by_role("button", name=f"Leave room {first}").click()
    await expect(room_tab(ann, first)).to_have_count(0)
    await expect_members(bob, bob_name, me=bob_name)
    await bob.locator("#conversations .conv-room").click()
    await send(bob, "ann has gone")
    await send(ann, "still here in the second room")
    await expect(log(ann).locator(".msg-text")).to_have_text(
        ["hello second room", "second room again", "still here in the second room"]
    )
    await expect(ann.locator("#conversations .badge")).to_have_count(0)  # nothing from the room left

    assert sockets.urls == [cluster.ws_url], sockets.urls  # one websocket, all along
    assert not http_sends, http_sends  # sent over the socket, not over HTTP
    assert len(sockets.hellos()) == 1 and sockets.hellos()[0]["v"] == 2, sockets.sent
    assert {c["room"] for c in sockets.commands("subscribe")} == {first, second}
    assert [c["room"] for c in sockets.commands("unsubscribe")] == [first]
    publishes = sockets.commands("publish") + sockets.commands("send")
    assert len(publishes) == 3 and all(c.get("mid") for c in publishes), publishes
    assert len({c["mid"] for c in publishes}) == 3
    for page in (ann, bob):
        await page.context.close()


async def test_a_message_sent_while_the_connection_is_down_arrives_once(cluster: Cluster, browser: Browser) -> None:
    """dan is on a connect node of his own, which is killed (SIGKILL) and started again; eve, on the
    other node, sees every message of his exactly once, and so does the room's history."""
    ws_port, rpc = free_port(), f"127.0.0.1:{free_port()}"
    node_env = {
        "GOCHAT_CONNECT_WEBSOCKET__BIND": f"127.0.0.1:{ws_port}",
        "GOCHAT_CONNECT_WEBSOCKET__RPC_BIND": rpc,
        "GOCHAT_CONNECT_WEBSOCKET__SERVER_ID": "ws-browser-victim",
    }
    node = await asyncio.to_thread(cluster.start_module, "connect_websocket", "connect_websocket_dan", **node_env)
    room = new_room()
    url = page_url(cluster, room=room)
    dan_name, eve_name = unique("dan"), unique("eve")
    dan = await open_page(browser, "about:blank")
    config = {"apiUrl": cluster.api_url, "wsUrl": f"ws://127.0.0.1:{ws_port}/ws"}
    await dan.route(
        "**/config.json", lambda route: route.fulfill(content_type="application/json", body=json.dumps(config))
    )
    await dan.goto(url)
    sockets = Sockets(dan)
    await sign_in(dan, dan_name)
    await expect(dan.locator("#conn-state")).to_have_text("connected")
    eve = await join(browser, url, eve_name)
    await expect_members(dan, dan_name, eve_name, me=dan_name)
    await send(dan, "before")
    await expect(log(eve).locator(".msg-text")).to_have_text(["before"])

    try:
        # 1. the node dies; dan writes while it is down: pending, then sent once it is back
        node.kill()
        await expect(dan.locator("#conn-state")).to_have_text(re.compile(r"^reconnecting in \d+ s$"))
        await send(dan, "written while down")
        pending = messages_with(dan, "written while down")
        await expect(pending).to_have_attribute("data-status", "pending")
        await expect(pending.locator(".msg-status")).to_have_text("sending…")
        node = await asyncio.to_thread(cluster.start_module, "connect_websocket", "connect_websocket_dan", **node_env)
        await dan.evaluate("reconnectNow()")  # now rather than at the backoff's next try
        await expect(dan.locator("#conn-state")).to_have_text("connected")
        await expect(pending).to_have_attribute("data-status", "sent")
        await expect(pending).to_have_attribute("data-id", re.compile(r"^\d+-\d+$"))
        await expect(pending.locator(".msg-status")).to_have_count(0)

        # 2. the reply is lost: the socket closes right after the publish went out. The page sends
        # it again with the same mid on the next socket; the server stores it once.
        box = dan.get_by_label("Message", exact=True)
        await box.fill("reply lost")
        await dan.evaluate("() => { document.getElementById('send-btn').click(); state.ws.close(); }")
        await expect(messages_with(dan, "reply lost")).to_have_attribute("data-status", "sent", timeout=40_000)

        # 3. no socket at all for longer than the send timeout: failed, with a Retry button
        await dan.evaluate(
            """() => {
              state.sendTimeoutMs = 1500;
              window.realWebSocket = window.WebSocket;
              window.WebSocket = function () { throw new Error('network down (test)'); };
              state.ws.close();
            }"""
        )
        await expect(dan.locator("#conn-state")).to_have_text(re.compile(r"^reconnecting in \d+ s$"))
        await send(dan, "needs a retry")
        failed = messages_with(dan, "needs a retry")
        await expect(failed).to_have_attribute("data-status", "failed")
        await expect(failed.locator(".msg-status")).to_contain_text("not sent")
        await dan.evaluate("() => { window.WebSocket = window.realWebSocket; state.sendTimeoutMs = 30000; }")
        await failed.get_by_role("button", name="Retry").click()
        await expect(dan.locator("#conn-state")).to_have_text("connected")
        await expect(failed).to_have_attribute("data-status", "sent")

        # a marker sent last: once eve has it, she has everything before it
        await send(dan, "marker")
        expected = ["before", "written while down", "reply lost", "needs a retry", "marker"]
        await expect(log(eve).locator(".msg-text")).to_have_text(expected)
        await expect(log(dan).locator(".msg-text")).to_have_text(expected)
        await expect(dan.locator("#messages .msg[data-status='sent']")).to_have_count(len(expected))
        ids = await dan.evaluate("[...document.querySelectorAll('#messages .msg')].map((n) => n.dataset.id)")
        assert len(set(ids)) == len(expected) and all(ids), ids

        async with ApiClient(cluster.api_url) as api:
            token = await api.register(unique("reader"))
            reply = await api.post("/push/history", {"authToken": token, "roomId": room, "limit": 100})
            assert reply["code"] == 0, reply
            kept = [m["msg"] for m in reversed(reply["data"]["messages"])]
            assert kept == expected, kept
            assert [m["id"] for m in reversed(reply["data"]["messages"])] == ids

        # every publish of a message carried one mid; a message sent again kept its mid
        mids: dict[str, set[str]] = {}
        for command in sockets.commands("publish"):
            mids.setdefault(command["msg"], set()).add(command["mid"])
        assert all(len(m) == 1 for m in mids.values()), mids
        assert len(sockets.hellos()) >= 4, sockets.hellos()  # a new socket after each drop

        await dan.reload()  # and a reload shows them from history, once each
        await expect(dan.locator("#conn-state")).to_have_text("connected")
        await expect(log(dan).locator(".msg-text")).to_have_text(expected)
    finally:
        node.kill()
    for page in (dan, eve):
        await page.context.close()


async def test_typing_shows_on_the_other_side(cluster: Cluster, browser: Browser) -> None:
    room = new_room()
    url = page_url(cluster, room=room)
    fay_name, gus_name = unique("fay"), unique("gus")
    fay = await open_page(browser, url)
    sockets = Sockets(fay)
    await sign_in(fay, fay_name)
    await expect(fay.locator("#conn-state")).to_have_text("connected")
    gus = await join(browser, url, gus_name)
    await expect_members(fay, fay_name, gus_name, me=fay_name)

    # in the room: gus sees it while fay types, and not once she stops
    box = fay.get_by_label("Message", exact=True)
    started = time.monotonic()
    await box.press_sequentially("hello gus, how are")
    typed_for = time.monotonic() - started
    await expect(gus.locator("#typing")).to_have_text(f"{fay_name} is typing…")
    await expect(fay.locator("#typing")).to_have_text("")  # not one's own
    typing = sockets.commands("typing")
    assert typing and all(c == {"cid": c["cid"], "cmd": "typing", "room": room} for c in typing), typing
    assert len(typing) <= 1 + typed_for // 3, (typing, typed_for)  # at most one every 3 s
    await expect(gus.locator("#typing")).to_have_text("", timeout=12_000)

    # a message from the one typing ends it at once
    await box.press_sequentially(" you")
    await expect(gus.locator("#typing")).to_have_text(f"{fay_name} is typing…")
    await box.press("Enter")
    await expect(log(gus).last.locator(".msg-text")).to_have_text("hello gus, how are you")
    await expect(gus.locator("#typing")).to_have_text("")

    # privately: only the conversation with the one typing shows it
    await gus.locator("#members").get_by_role("button", name=fay_name).click()
    await fay.locator("#members").get_by_role("button", name=gus_name).click()
    await fay.get_by_label("Message", exact=True).press_sequentially("a secret")
    await expect(gus.locator("#typing")).to_have_text(f"{fay_name} is typing…")
    assert sockets.commands("typing")[-1]["to"] == int(await gus.evaluate("state.me.userId"))
    await gus.locator("#conversations .conv-room").click()
    await expect(gus.locator("#typing")).to_have_text("")
    for page in (fay, gus):
        await page.context.close()
