"""Kept messages in the browser: history on load and reload, older pages, offline private messages,
and a dropped websocket resumed by id (every message once, in order).

Same setup as test_browser.py (its fixtures and helpers): headless Chromium, several people, the
whole system as real processes.  Other people send over HTTP (harness.ApiClient) where the test
needs many messages quickly or while someone is away.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.e2e import test_browser
from tests.e2e.harness import ApiClient, Cluster, eventually
from tests.e2e.test_browser import (
    CLUSTER_ENV,  # noqa: F401  (read by the cluster fixture: the same site settings)
    TIME_OF_DAY,
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

HISTORY_PAGE = 50  # app.js asks for pages of this many


def record_sent(page: Page, received: list[Any] | None = None) -> list[dict[str, Any]]:
    """What the page sends on every websocket it opens from now on (the hello, then commands); with
    ``received``, the frames those sockets receive go there too (as JSON, each socket's first
    after a None)."""
    sent: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        def on_sent(payload: str | bytes) -> None:
            body = json.loads(payload)
            if isinstance(body, dict):
                sent.append(body)

        ws.on("framesent", on_sent)
        if received is not None:
            received.append(None)
            ws.on("framereceived", lambda payload: received.append(json.loads(payload) if payload.strip() else ""))

    page.on("websocket", on_socket)
    return sent


def hellos(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [body for body in sent if "v" in body and "authToken" in body]


def subscribes(sent: list[dict[str, Any]], room: int) -> list[dict[str, Any]]:
    return [body for body in sent if body.get("cmd") == "subscribe" and body.get("room") == room]


async def shown(page: Page) -> list[tuple[str, str]]:
    """(id, text) of each message of the open conversation, top to bottom."""
    return [
        tuple(row)
        for row in await page.evaluate(
            "[...document.querySelectorAll('#messages .msg')]"
            ".map((n) => [n.dataset.id || '', n.querySelector('.msg-text').textContent])"
        )
    ]


def id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


async def wait_for_count(page: Page, at_least: int) -> None:
    await page.wait_for_function("(n) => document.querySelectorAll('#messages .msg').length >= n", arg=at_least)


# The network goes away for one page: its socket closes and new ones cannot be opened until
# RESTORE_NETWORK (connect() treats the throw like a failed connection and backs off).
DROP_NETWORK = """() => {
  window.realWebSocket = window.WebSocket;
  window.WebSocket = function () { throw new Error('network down (test)'); };
  state.ws.close();
}"""
RESTORE_NETWORK = "() => { window.WebSocket = window.realWebSocket; }"


async def test_a_dropped_websocket_resumes_with_every_message_once_and_in_order(
    cluster: Cluster, browser: Browser
) -> None:
    room = new_room()
    url = page_url(cluster, room=room)
    kate_name, mia_name = unique("kate"), unique("mia")
    kate = await open_page(browser, url)
    sent = record_sent(kate)
    await sign_in(kate, kate_name)
    await expect(kate.locator("#conn-state")).to_have_text("connected")
    mia = await join(browser, url, mia_name)  # stays connected: what kate must end up with
    await expect_members(kate, kate_name, mia_name, me=kate_name)
    # nothing to resume from yet: a hello without since, the room subscribed live or after its history
    assert len(hellos(sent)) == 1 and "since" not in hellos(sent)[0], sent
    kate_id = await kate.evaluate("state.me.userId")  # a string, as toUserId is on the wire

    per_sender = 40
    async with ApiClient(cluster.api_url) as api:
        sam_name, tess_name = unique("sam"), unique("tess")
        sam, tess = await api.register(sam_name), await api.register(tess_name)

        async def keep_sending(token: str, name: str) -> None:
            for i in range(per_sender):
                reply = await api.post("/push/pushRoom", {"authToken": token, "msg": f"{name} {i:02d}", "roomId": room})
                assert reply["code"] == 0, reply
                await asyncio.sleep(0.02)

        sending = asyncio.gather(keep_sending(sam, sam_name), keep_sending(tess, tess_name))
        try:
            await wait_for_count(kate, 10)
            await kate.evaluate(DROP_NETWORK)
            await expect(kate.locator("#conn-state")).to_have_text(re.compile(r"^reconnecting in \d+ s$"))
            seen = await kate.evaluate("(room) => state.rooms.get(room).lastId", room)
            had = len(await shown(kate))
            # the others go on: mia gets 20 more room messages and kate a private one meanwhile
            await wait_for_count(mia, had + 20)
            private = {"authToken": sam, "msg": "while you were away", "toUserId": kate_id, "roomId": room}
            reply = await api.post("/push/push", private)
            assert reply["code"] == 0, reply
            assert len(await shown(kate)) == had
            await kate.evaluate(RESTORE_NETWORK)
            await kate.get_by_role("button", name="Reconnect now").click()
            await expect(kate.locator("#conn-state")).to_have_text("connected")
            await sending
        finally:
            sending.cancel()  # a failure above must not leave it sending into a closed session

    assert len(hellos(sent)) == 2, sent
    assert subscribes(sent, room)[-1]["since"] == seen and seen, sent  # resumed from the last id it saw
    total = 2 * per_sender
    await expect(log(mia)).to_have_count(total)
    await expect(log(kate)).to_have_count(total)
    kates, mias = await shown(kate), await shown(mia)
    assert kates == mias
    ids = [message_id for message_id, _ in kates]
    assert all(ids) and len(set(ids)) == total
    assert [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)
    texts = [text for _, text in kates]
    for name in (sam_name, tess_name):  # each sender's messages once each, in the order sent
        assert [t for t in texts if t.startswith(name + " ")] == [f"{name} {i:02d}" for i in range(per_sender)]

    # the private message sent while the socket was down came with the backlog, marked unread
    conversation = kate.locator("#conversations .conv-private", has_text=sam_name)
    await expect(conversation.locator(".badge")).to_have_text("1 unread")
    await conversation.click()
    await expect(log(kate).locator(".msg-text")).to_have_text(["while you were away"])
    await kate.context.close()
    await mia.context.close()


async def test_a_reload_shows_the_history_and_older_pages_on_scrolling_up(cluster: Cluster, browser: Browser) -> None:
    room, other_room = new_room(), new_room()
    uma_name = unique("uma")
    uma = await join(browser, page_url(cluster, room=room), uma_name)
    await expect(uma.locator("#messages .empty")).to_have_text("No messages in this room yet.")
    async with ApiClient(cluster.api_url) as api:
        vic_name = unique("vic")
        vic = await api.register(vic_name)
        older = [f"message {i:02d}" for i in range(60)]
        await api.push_room_many(vic, room, older, concurrency=1)  # one at a time: in this order
        await api.push_room_many(vic, other_room, ["in the other room"], concurrency=1)
    await send(uma, "and one from uma")
    everything = [*older, "and one from uma"]
    await expect(log(uma)).to_have_count(len(everything))

    # a reload shows the latest page, oldest at the top, sender and time as for live messages
    await uma.reload()
    await expect(uma.locator("#conn-state")).to_have_text("connected")
    await expect(log(uma).locator(".msg-text")).to_have_text(everything[-HISTORY_PAGE:])
    await expect(log(uma).first.locator(".msg-from")).to_have_text(vic_name)
    await expect(log(uma).first.locator(".msg-time")).to_have_text(TIME_OF_DAY)
    await expect(log(uma).last).to_have_class(re.compile(r"\bown\b"))
    await expect(log(uma).last.locator(".msg-from")).to_have_text(f"{uma_name} (you)")
    messages = uma.locator("#messages")
    assert await messages.evaluate("(n) => n.scrollHeight - n.scrollTop - n.clientHeight < 80")  # at the newest

    # scrolling to the top fetches the page before, and the messages in view stay in view
    await expect(uma.get_by_role("button", name="Load older messages")).to_be_visible()
    await messages.evaluate("(n) => { n.scrollTop = 0; }")
    await expect(log(uma).locator(".msg-text")).to_have_text(everything)
    await expect(uma.get_by_role("button", name="Load older messages")).to_have_count(0)
    assert await messages.evaluate("(n) => n.scrollTop") > 0
    ids = [message_id for message_id, _ in await shown(uma)]
    assert len(set(ids)) == len(everything) and all(ids)

    # switching rooms shows the other room's history, and switching back this one's again
    # (the rooms stay open side by side: back in this one, what was paged in is still there)
    await uma.get_by_label("Room", exact=True).fill(str(other_room))
    await uma.get_by_role("button", name="Open").click()
    await expect(log(uma).locator(".msg-text")).to_have_text(["in the other room"])
    await expect(uma.locator("#conn-state")).to_have_text("connected")
    await uma.get_by_label("Room", exact=True).fill(str(room))
    await uma.get_by_role("button", name="Open").click()
    await expect(log(uma).locator(".msg-text")).to_have_text(everything)

    # someone new to the room sees the same latest page on arrival
    wes = await join(browser, page_url(cluster, room=room), unique("wes"))
    await expect(log(wes).locator(".msg-text")).to_have_text(everything[-HISTORY_PAGE:])
    await uma.context.close()
    await wes.context.close()


async def test_private_messages_to_a_logged_out_person_are_there_with_their_count_at_login(
    cluster: Cluster, browser: Browser
) -> None:
    room = new_room()
    pat_name, quinn_name = unique("pat"), unique("quinn")
    pat = await join(browser, page_url(cluster, room=room), pat_name)
    quinn = await join(browser, page_url(cluster, room=room), quinn_name)
    await expect_members(pat, pat_name, quinn_name, me=pat_name)
    await pat.locator("#members").get_by_role("button", name=quinn_name).click()
    await expect(pat.locator("#conv-title")).to_have_text(f"Private chat with {quinn_name}")
    await send(pat, "hello while you are here")
    await expect(quinn.locator("#conversations .conv-private .badge")).to_have_text("1 unread")

    # quinn reads it, logs out; pat writes twice more meanwhile
    await quinn.locator("#conversations .conv-private").click()
    await expect(log(quinn).locator(".msg-text")).to_have_text(["hello while you are here"])
    await quinn.get_by_role("button", name="Log out").click()
    await expect_members(pat, pat_name, me=pat_name)
    away = ["are you there?", "call me when you are back"]
    for text in away:
        await send(pat, text)
    await expect(log(pat).locator(".msg-text")).to_have_text(["hello while you are here", *away])

    # quinn logs in again: the two that came meanwhile are unread, the one read before is not
    await sign_in(quinn, quinn_name, button="Log in")
    await expect(quinn.locator("#conn-state")).to_have_text("connected")
    conversation = quinn.locator("#conversations .conv-private", has_text=pat_name)
    await expect(conversation.locator(".badge")).to_have_text("2 unread")
    await expect(quinn).to_have_title("(2) gochat")
    await conversation.click()
    # the conversation's history has the earlier one too; each message once, in order
    await expect(log(quinn).locator(".msg-text")).to_have_text(["hello while you are here", *away])
    await expect(conversation.locator(".badge")).to_have_count(0)
    await expect(quinn).to_have_title("gochat")

    # a person on a new device (no browser storage) also finds the messages sent while away
    await send(quinn, "back now")
    await expect(log(pat).last.locator(".msg-text")).to_have_text("back now")
    await quinn.context.close()
    rex_name = unique("rex")
    rex = await join(browser, page_url(cluster, room=room), rex_name)
    await pat.locator("#members").get_by_role("button", name=rex_name).click()
    await rex.get_by_role("button", name="Log out").click()
    await send(pat, "for rex, later")
    await rex.context.close()
    rex = await open_page(browser, page_url(cluster, room=room))
    await sign_in(rex, rex_name, button="Log in")
    rex_conversation = rex.locator("#conversations .conv-private", has_text=pat_name)
    await expect(rex_conversation.locator(".badge")).to_have_text("1 unread")

    # pat reloads, quinn is back on another device: pat's conversation with quinn comes from history
    await pat.reload()
    await expect(pat.locator("#conn-state")).to_have_text("connected")
    quinn = await open_page(browser, page_url(cluster, room=room))
    await sign_in(quinn, quinn_name, button="Log in")
    await pat.locator("#members").get_by_role("button", name=quinn_name).click()
    await expect(log(pat).locator(".msg-text")).to_have_text(["hello while you are here", *away, "back now"])
    await expect(pat.locator("#messages .msg.own")).to_have_count(3)
    await expect(log(pat).last.locator(".msg-from")).to_have_text(quinn_name)
    for page in (pat, quinn, rex):
        await page.context.close()


async def test_a_since_the_server_does_not_know_reloads_the_history_and_is_forgotten(
    cluster: Cluster, browser: Browser
) -> None:
    room = new_room()
    yan = await join(browser, page_url(cluster, room=room), unique("yan"))
    for text in ("one", "two", "three"):
        await send(yan, text)
    await expect(log(yan).locator(".msg-text")).to_have_text(["one", "two", "three"])
    received: list[Any] = []
    sent = record_sent(yan, received)
    history_requests: list[str] = []
    yan.on("request", lambda r: history_requests.append(r.url) if r.url.endswith("/push/history") else None)

    # as if the page had kept ids of another deployment, from the future: not ones of ours, for
    # the room (the subscribe's since) and for private messages (the hello's)
    bogus = "99999999999999-0"
    await yan.evaluate(
        "([room, bogus]) => { state.rooms.get(room).lastId = bogus; state.privateSince = bogus; state.ws.close(); }",
        [room, bogus],
    )
    await eventually(lambda: len(subscribes(sent, room)) == 1, 10, "a new subscribe (after the backoff)")
    await expect(yan.locator("#conn-state")).to_have_text("connected")
    assert hellos(sent)[-1]["since"] == bogus, sent
    assert subscribes(sent, room)[-1]["since"] == bogus, sent
    await send(yan, "four")
    await expect(log(yan).locator(".msg-text")).to_have_text(["one", "two", "three", "four"])
    events = [frame for frame in received if frame and "type" in frame]
    assert events[0]["type"] == "welcome", events
    gaps = [frame for frame in events if frame["type"] == "gap"]
    assert {"type": "gap", "reason": "unknown"} in gaps, gaps
    assert {"type": "gap", "room": room, "reason": "unknown"} in gaps, gaps
    assert history_requests, "the page did not reload the history after the gap event"

    # the unknown ids are forgotten: the newest real one is what the next subscribe resumes from
    # (once its event came: the result of the publish that sent it may come first)
    newest = (await shown(yan))[-1][0]
    assert newest, await shown(yan)
    await yan.wait_for_function("([room, id]) => state.rooms.get(room).lastId === id", arg=[room, newest])
    assert await yan.evaluate("localStorage.getItem('gochat.lastId.' + state.me.userId)") == ""
    await yan.evaluate("state.ws.close()")
    await eventually(lambda: len(subscribes(sent, room)) == 2, 10, "another subscribe")
    await expect(yan.locator("#conn-state")).to_have_text("connected")
    assert subscribes(sent, room)[-1]["since"] == newest, sent
    assert "since" not in hellos(sent)[-1], sent
    await expect(log(yan).locator(".msg-text")).to_have_text(["one", "two", "three", "four"])
    await yan.context.close()


async def test_after_the_websocket_node_restarts_everyone_gets_what_was_sent_meanwhile(
    cluster: Cluster, browser: Browser
) -> None:
    room = new_room()
    url = page_url(cluster, room=room)
    ada_name, ben_name = unique("ada"), unique("ben")
    ada = await join(browser, url, ada_name)
    ben = await join(browser, url, ben_name)
    await expect_members(ada, ada_name, ben_name, me=ada_name)
    await send(ada, "before the restart")
    await expect(log(ben).locator(".msg-text")).to_have_text(["before the restart"])
    ada_id = await ada.evaluate("state.me.userId")

    (node,) = [p for p in cluster.processes("connect_websocket") if p.running()]
    assert await asyncio.to_thread(node.stop) == 0
    for page in (ada, ben):
        await expect(page.locator("#conn-state")).to_have_text(re.compile(r"^reconnecting in \d+ s$"))
    async with ApiClient(cluster.api_url) as api:  # the api is up: others go on sending
        cy = await api.register(unique("cy"))
        meanwhile = [f"while the node was down {i}" for i in range(5)]
        await api.push_room_many(cy, room, meanwhile, concurrency=1)
        reply = await api.post("/push/push", {"authToken": cy, "msg": "psst, ada", "toUserId": ada_id, "roomId": room})
        assert reply["code"] == 0, reply
    await asyncio.to_thread(cluster.start_module, "connect_websocket")
    expected = ["before the restart", *meanwhile]
    for page in (ada, ben):  # backoff 1, 2, 4, 8 s (±20 %): back within about 20 s
        await expect(page.locator("#conn-state")).to_have_text("connected", timeout=40_000)
        await expect(log(page).locator(".msg-text")).to_have_text(expected)
    await expect(ada.locator("#conversations .conv-private .badge")).to_have_text("1 unread")
    await expect(ben.locator("#conversations .conv-private")).to_have_count(0)
    await send(ben, "all here")
    await expect(log(ada).locator(".msg-text")).to_have_text([*expected, "all here"])
    await ada.context.close()
    await ben.context.close()
