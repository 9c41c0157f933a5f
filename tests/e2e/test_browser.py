"""The chat page in a real browser: headless Chromium driven by Playwright, against the whole system.

Every person is a browser context of its own (own localStorage, own cookies), as two people on two
machines would be.  Assertions are Playwright's waiting ones (``expect``), bounded by a timeout;
nothing sleeps.  The site of this module's cluster has no api/ws address configured, so
``/config.json`` is derived from the host name the page was loaded by: pages are loaded both as
http://127.0.0.1:<port> and http://localhost:<port>.

``UPDATE_SCREENSHOT=1`` makes the chat test overwrite ``docs/screenshot.png`` (shown in the README);
otherwise the screenshot goes to the test's tmp folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.harness import Cluster

CLUSTER_ENV = {"GOCHAT_SITE__API_URL": "", "GOCHAT_SITE__WS_URL": ""}

CHROMIUM = "/usr/bin/chromium"  # Debian's package: browsers cannot be downloaded here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
TIMEOUT_MS = 15_000
TIME_OF_DAY = re.compile(r"^\d\d:\d\d$")

# Not GOCHAT_*: those are configuration keys for the modules, which refuse unknown ones.
UPDATE_SCREENSHOT = os.environ.get("UPDATE_SCREENSHOT", "") == "1"

expect.set_options(timeout=TIMEOUT_MS)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def new_room() -> int:
    return int(uuid.uuid4().int % 10**8) + 1000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (./run.sh test does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


def page_url(cluster: Cluster, host: str = "127.0.0.1", room: int | None = None) -> str:
    return f"http://{host}:{cluster.site_port}/" + (f"#room={room}" if room else "")


async def open_page(browser: Browser, url: str, **context_options: object) -> Page:
    options = {"viewport": {"width": 1200, "height": 760}, **context_options}
    context = await browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(url)
    return page


async def sign_in(page: Page, name: str, password: str = "pw-123456", button: str = "Register") -> None:
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name=button, exact=True).click()


async def join(browser: Browser, url: str, name: str) -> Page:
    """A new person: own browser context, registers, and is connected to the page's room."""
    page = await open_page(browser, url)
    await sign_in(page, name)
    await expect(page.locator("#me")).to_have_text(name)
    await expect(page.locator("#conn-state")).to_have_text("connected")
    return page


async def expect_members(page: Page, *names: str, me: str) -> None:
    expected = sorted(names)
    shown = [f"{n} (you)" if n == me else n for n in expected]
    await expect(page.locator("#members > li")).to_have_text(shown)
    await expect(page.locator("#online-count")).to_have_text(str(len(names)))


def log(page: Page):  # the messages of the open conversation
    return page.locator("#messages .msg")


async def send(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_label("Message", exact=True)).to_have_value("")


async def test_two_people_chat_in_the_room_and_privately(cluster: Cluster, browser: Browser, tmp_path: Path) -> None:
    url = page_url(cluster)
    # plain names (each cluster has a fresh user database): they show in the README's screenshot
    alice_name, bob_name, carol_name = "alice", "bob", "carol"
    alice = await join(browser, url, alice_name)
    bob = await join(browser, url, bob_name)
    await expect_members(alice, alice_name, bob_name, me=alice_name)
    await expect_members(bob, alice_name, bob_name, me=bob_name)
    await expect(alice.locator("#conv-title")).to_have_text("Room 1")

    # a room message typed by one appears for both, with sender and time; the sender's is marked
    await send(alice, "Hello Bob <b>not bold</b> & welcome")
    for page in (alice, bob):
        message = log(page).last
        await expect(message.locator(".msg-text")).to_have_text("Hello Bob <b>not bold</b> & welcome")
        await expect(message.locator(".msg-from")).to_contain_text(alice_name)
        await expect(message.locator(".msg-time")).to_have_text(TIME_OF_DAY)
    await expect(log(alice).last).to_have_class(re.compile(r"\bown\b"))
    await expect(log(alice).last.locator(".msg-from")).to_have_text(f"{alice_name} (you)")
    await expect(log(bob).last).not_to_have_class(re.compile(r"\bown\b"))
    await send(bob, "Hi Alice! Nice page.")
    await expect(log(alice).last.locator(".msg-text")).to_have_text("Hi Alice! Nice page.")
    await expect(log(alice)).to_have_count(2)

    # a third person, who must not see the private message
    carol = await join(browser, url, carol_name)
    await expect_members(alice, alice_name, bob_name, carol_name, me=alice_name)

    # a private message: pick bob in the member list
    await alice.locator("#members").get_by_role("button", name=bob_name).click()
    await expect(alice.locator("#conv-title")).to_have_text(f"Private chat with {bob_name}")
    await send(alice, "psst, just between us")
    # the page shows it at once, pending, then sent with the id the server gave it
    await expect(log(alice)).to_have_count(1)
    await expect(log(alice).last).to_have_class(re.compile(r"\bown\b"))
    await expect(log(alice).last).to_have_attribute("data-status", "sent")
    await expect(log(alice).last.locator(".msg-text")).to_have_text("psst, just between us")

    # bob: an unread mark on the conversation (and on alice in the member list), not in the room
    conversation = bob.locator("#conversations .conv-private", has_text=alice_name)
    await expect(conversation).to_have_class(re.compile(r"\bunread\b"))
    await expect(conversation.locator(".badge")).to_have_text("1 unread")
    await expect(bob.locator("#members").get_by_role("button", name=alice_name).locator(".badge")).to_be_visible()
    await expect(bob).to_have_title("(1) gochat")
    await expect(log(bob)).to_have_count(2)
    await expect(bob.locator("#messages")).not_to_contain_text("psst")

    # carol sees the room, never the private message: a later room message is the marker
    await send(carol, "carol was here")
    await expect(log(bob).last.locator(".msg-text")).to_have_text("carol was here")
    await expect(log(carol).last.locator(".msg-text")).to_have_text("carol was here")
    await expect(carol.locator("#conversations .conv-private")).to_have_count(0)
    await expect(carol.locator("#messages")).not_to_contain_text("psst")
    await expect(log(alice)).to_have_count(1)  # alice is in the private view: the room waits, marked
    await expect(alice.locator("#conversations .conv-room .badge")).to_have_text("1 unread")

    screenshot = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "screenshot.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    await bob.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    await conversation.click()
    await expect(bob.locator("#conv-title")).to_have_text(f"Private chat with {alice_name}")
    await expect(log(bob)).to_have_count(1)
    await expect(log(bob).last.locator(".msg-from")).to_have_text(alice_name)
    await expect(log(bob).last.locator(".msg-text")).to_have_text("psst, just between us")
    await expect(conversation.locator(".badge")).to_have_count(0)
    await expect(bob).to_have_title("gochat")
    await send(bob, "ok, privately then")
    await expect(log(alice)).to_have_count(2)  # alice has the conversation open: no unread mark
    await expect(log(alice).last.locator(".msg-text")).to_have_text("ok, privately then")
    await expect(alice.locator("#conversations .conv-private .badge")).to_have_count(0)

    # back in the room, alice finds carol's message that came meanwhile
    await alice.locator("#conversations .conv-room").click()
    await expect(alice.locator("#conv-title")).to_have_text("Room 1")
    await expect(log(alice).last.locator(".msg-text")).to_have_text("carol was here")

    # carol leaves (closes the browser window): the others' member lists follow
    await carol.context.close()
    await expect_members(alice, alice_name, bob_name, me=alice_name)
    await expect_members(bob, alice_name, bob_name, me=bob_name)

    # a reload keeps the session (the token is in localStorage) and rejoins the room
    await bob.reload()
    await expect(bob.locator("#me")).to_have_text(bob_name)
    await expect(bob.locator("#conn-state")).to_have_text("connected")
    await expect_members(bob, alice_name, bob_name, me=bob_name)

    # log out: back to the form, the token is gone, the others see alice leave
    await alice.get_by_role("button", name="Log out").click()
    await expect(alice.get_by_label("User name")).to_be_visible()
    await expect_members(bob, bob_name, me=bob_name)
    assert await alice.evaluate("localStorage.getItem('authToken')") is None
    await alice.reload()
    await expect(alice.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    await expect(alice.locator("#chat")).to_be_hidden()
    for page in (alice, bob):
        await page.context.close()


async def test_the_page_fits_a_phone_screen_and_works_by_keyboard(cluster: Cluster, browser: Browser) -> None:
    name = unique("kim")
    page = await open_page(
        browser, page_url(cluster, room=new_room()), viewport={"width": 360, "height": 740}, is_mobile=True
    )
    await sign_in(page, name)
    await expect(page.locator("#conn-state")).to_have_text("connected")
    await expect_members(page, name, me=name)
    box = page.get_by_label("Message", exact=True)
    await box.fill("sent with the Enter key, and long enough to wrap: " + "word " * 40)
    await box.press("Enter")
    await expect(log(page)).to_have_count(1)
    for control in (box, page.get_by_role("button", name="Send"), page.get_by_role("button", name="Log out")):
        await expect(control).to_be_visible()
    width, viewport = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, "the page scrolls sideways on a phone"
    await page.context.close()


async def test_failed_login_and_register_show_the_api_error(cluster: Cluster, browser: Browser) -> None:
    page = await open_page(browser, page_url(cluster, "localhost"))
    await sign_in(page, unique("nobody"), "wrong", button="Log in")
    await expect(page.get_by_role("alert")).to_have_text("no this user or password error!")
    await expect(page.locator("#chat")).to_be_hidden()

    name = unique("dana")
    await sign_in(page, name, "right-password")
    await expect(page.locator("#me")).to_have_text(name)
    await page.get_by_role("button", name="Log out").click()

    await sign_in(page, name, "another-password")  # Register again with the same name
    await expect(page.locator("#auth-error")).to_have_text("this user name already have , please login !!!")
    await sign_in(page, name, "wrong-password", button="Log in")
    await expect(page.locator("#auth-error")).to_have_text("no this user or password error!")
    await page.get_by_label("User name").fill("")
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.locator("#auth-error")).to_have_text("Please enter a user name and a password")
    await sign_in(page, name, "right-password", button="Log in")
    await expect(page.locator("#me")).to_have_text(name)
    await expect(page.locator("#auth-error")).to_be_hidden()

    # a token that died elsewhere (a login from another browser ends it): the page finds out the
    # next time it uses it, here the typing notice that goes out as soon as a message is typed
    other = await open_page(browser, page_url(cluster))
    await sign_in(other, name, "right-password", button="Log in")
    await expect(other.locator("#me")).to_have_text(name)
    await page.get_by_label("Message", exact=True).fill("are you there?")
    await expect(page.locator("#auth-error")).to_have_text("Your session has ended, please log in again")
    await expect(page.locator("#chat")).to_be_hidden()
    await page.context.close()
    await other.context.close()


async def test_rooms_open_side_by_side_from_the_room_box_and_the_address(cluster: Cluster, browser: Browser) -> None:
    first, second = new_room(), new_room()
    erin_name, finn_name = unique("erin"), unique("finn")
    erin = await join(browser, page_url(cluster, "localhost", first), erin_name)
    finn = await join(browser, page_url(cluster, "localhost", first), finn_name)
    await expect(erin.locator("#conv-title")).to_have_text(f"Room {first}")
    await expect_members(finn, erin_name, finn_name, me=finn_name)
    await send(finn, "in the first room")
    await expect(log(erin).last.locator(".msg-text")).to_have_text("in the first room")

    # erin opens a second room: it is shown, the first stays open (and erin in it) beside it
    await erin.get_by_label("Room", exact=True).fill(str(second))
    await erin.get_by_role("button", name="Open").click()
    await expect(erin.locator("#conv-title")).to_have_text(f"Room {second}")
    await expect(erin).to_have_url(re.compile(rf"#room={second}$"))
    await expect(erin.locator("#conn-state")).to_have_text("connected")
    await expect_members(erin, erin_name, me=erin_name)
    await expect(log(erin)).to_have_count(0)
    await expect(erin.locator("#conversations .conv-room")).to_have_text([f"Room {first}", f"Room {second}"])
    await expect_members(finn, erin_name, finn_name, me=finn_name)

    await send(finn, "the first room goes on")
    await expect(erin.locator(f'#conversations .conv-room[data-room-id="{first}"] .badge')).to_have_text("1 unread")
    await expect(erin.locator("#messages")).not_to_contain_text("the first room goes on")

    # finn follows through the address bar (#room=…): a tab of its own too
    await finn.goto(page_url(cluster, "localhost", second))
    await expect(finn.locator("#conv-title")).to_have_text(f"Room {second}")
    await expect_members(erin, erin_name, finn_name, me=erin_name)
    await expect_members(finn, erin_name, finn_name, me=finn_name)
    await send(erin, "welcome to the second room")
    await expect(log(finn).last.locator(".msg-text")).to_have_text("welcome to the second room")
    await expect(erin.locator("#messages")).not_to_contain_text("the first room")

    # a reload opens the same rooms again, showing the one in the address
    await erin.reload()
    await expect(erin.locator("#conn-state")).to_have_text("connected")
    await expect(erin.locator("#conversations .conv-room")).to_have_text([f"Room {first}", f"Room {second}"])
    await expect(erin.locator("#conv-title")).to_have_text(f"Room {second}")
    await expect(log(erin).locator(".msg-text")).to_have_text(["welcome to the second room"])

    # a room number that is not one is refused next to the form
    await erin.get_by_label("Room", exact=True).fill("0")
    await erin.get_by_role("button", name="Open").click()
    await expect(erin.locator("#room-error")).to_contain_text("whole number")
    await expect(erin.locator("#conv-title")).to_have_text(f"Room {second}")
    await erin.context.close()
    await finn.context.close()


async def test_the_page_finds_api_and_websocket_from_its_host_name_or_config(
    cluster: Cluster, browser: Browser
) -> None:
    for host in ("localhost", "127.0.0.1"):
        page = await open_page(browser, page_url(cluster, host))
        config = await page.evaluate("fetch('config.json').then((r) => r.json())")
        ws_url = f"ws://{host}:{cluster.ws_port}/ws"  # no node registered a public URL here
        assert config == {"apiUrl": f"http://{host}:{cluster.api_port}", "wsUrl": ws_url, "wsUrls": [ws_url]}
        await page.context.close()

    # addresses given in config.json win: the page at localhost talks to 127.0.0.1
    page = await open_page(browser, "about:blank")
    explicit = {"apiUrl": cluster.api_url + "/", "wsUrl": cluster.ws_url}
    await page.route(
        "**/config.json",
        lambda route: route.fulfill(content_type="application/json", body=json.dumps(explicit)),
    )
    await page.goto(page_url(cluster, "localhost"))
    async with page.expect_request(lambda request: request.url == f"{cluster.api_url}/user/register"):
        await sign_in(page, unique("gina"))
    await expect(page.locator("#conn-state")).to_have_text("connected")
    await page.context.close()


async def test_garbage_and_empty_frames_break_nothing(cluster: Cluster, browser: Browser) -> None:
    room = new_room()
    name = unique("hugo")
    page = await join(browser, page_url(cluster, room=room), name)
    await expect_members(page, name, me=name)
    # a proxy may send anything; events of unknown types, replies nobody waits for, events without
    # the fields they need, and v1 frames are ignored
    frames = ["", "   ", "not json", "[]", "null", '{"type":"message"}', '{"type":"message","room":"x","id":7}']
    frames += [f'{{"type":"join","room":{room}}}', f'{{"type":"leave","room":{room},"user":5}}', '{"type":"typing"}']
    frames += ['{"type":"gap","room":1}', '{"type":"nope"}', '{"cid":999999,"result":{}}', '{"cid":0,"error":{}}']
    frames += ['{"op":4}', '{"op":2}', '{"type":"welcome"}']
    for frame in frames:
        await page.evaluate("(frame) => handleFrame(frame)", frame)
    await expect_members(page, name, me=name)
    await send(page, "still fine")
    await expect(log(page).last.locator(".msg-text")).to_have_text("still fine")
    await page.context.close()


async def test_reconnects_with_backoff_when_the_websocket_node_restarts(cluster: Cluster, browser: Browser) -> None:
    room = new_room()
    ivy_name, jay_name = unique("ivy"), unique("jay")
    ivy = await join(browser, page_url(cluster, room=room), ivy_name)
    jay = await join(browser, page_url(cluster, room=room), jay_name)
    await expect_members(ivy, ivy_name, jay_name, me=ivy_name)

    (node,) = [p for p in cluster.processes("connect_websocket") if p.running()]
    assert await asyncio.to_thread(node.stop) == 0  # closes every socket with 1001
    for page in (ivy, jay):
        await expect(page.locator("#conn-state")).to_have_text(re.compile(r"^reconnecting in \d+ s$"))
        await expect(page.get_by_role("button", name="Reconnect now")).to_be_visible()

    await asyncio.to_thread(cluster.start_module, "connect_websocket")
    for page in (ivy, jay):  # backoff 1, 2, 4, 8 s (±20 %): back within about 20 s
        await expect(page.locator("#conn-state")).to_have_text("connected", timeout=40_000)
        await expect(page.get_by_role("button", name="Reconnect now")).to_be_hidden()
    await expect_members(ivy, ivy_name, jay_name, me=ivy_name)
    await send(jay, "back again")
    await expect(log(ivy).last.locator(".msg-text")).to_have_text("back again")
    await ivy.context.close()
    await jay.context.close()
