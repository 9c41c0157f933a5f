"""The terminal chat (``gochat-py client chat``) used the way a person uses it: started in tmux,
typed into with send-keys, read back from the screen with capture-pane.  Two users chat in a room
(one over websocket, one over TCP), switch rooms, and write each other privately."""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from gochat_py.client.api import login
from tests.e2e.harness import Cluster, eventually

CLUSTER_MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")
CLUSTER_ENV = {"GOCHAT_CONNECT__SESSION_CHECK": "1"}  # nodes notice a session ended elsewhere within 1 s
WAIT = 30.0


class Tmux:
    """A tmux server of its own (``-L``), so a person's tmux is never touched."""

    def __init__(self) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed (./run.sh test installs it)")
        self.socket = f"gochat-test-{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, timeout=20
        )
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def start(self, name: str, argv: list[str]) -> None:
        # the shell stays after the chat ends, so its exit status can be read from the screen
        command = f"{shlex.join(argv)}; echo EXITED $?; sleep 600"
        self.tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50", command)

    def type(self, name: str, line: str) -> None:
        self.tmux("send-keys", "-t", name, "-l", line)
        self.tmux("send-keys", "-t", name, "Enter")

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", name, "-S", "-500")

    async def shows(self, name: str, text: str) -> None:
        try:
            await eventually(lambda: text in self.screen(name), WAIT, f"{text!r} on {name}'s screen", interval=0.2)
        except AssertionError:
            raise AssertionError(f"{text!r} not on {name}'s screen:\n{self.screen(name)}") from None

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=20)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    running = Tmux()
    yield running
    running.stop()


def chat(cluster: Cluster, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gochat_py", "client", "chat", "--user", name, "--password", "pw-123456",
        "--register", "--api", cluster.api_url, *extra,
    ]  # fmt: skip


async def test_two_people_chat_in_rooms_and_privately_from_their_terminals(cluster: Cluster, tmux: Tmux) -> None:
    t = uuid.uuid4().hex[:6]
    ann, bob = f"ann{t}", f"bob{t}"
    room, other = random.randint(10**6, 10**9), random.randint(10**6, 10**9)
    tmux.start(ann, chat(cluster, ann, "--ws", cluster.ws_url, "--room", str(room)))
    await tmux.shows(ann, f"* connected as {ann}")
    await tmux.shows(ann, f"* joined room {room} (1 here: {ann})")
    tmux.start(bob, chat(cluster, bob, "--tcp", f"127.0.0.1:{cluster.tcp_ports[0]}", "--room", str(room)))
    await tmux.shows(bob, f"* joined room {room} (2 here: {ann}, {bob})")
    await tmux.shows(ann, f"* {bob} joined room {room}")

    tmux.type(ann, "hello bob")
    await tmux.shows(bob, f"[room {room}] {ann}: hello bob")
    await tmux.shows(ann, f"[room {room}] {ann}: hello bob")

    tmux.type(bob, f"/msg {ann} hi ann, just you")
    await tmux.shows(ann, f"[{bob} -> you] hi ann, just you")
    await tmux.shows(bob, f"[you -> {ann}] hi ann, just you")

    # ann's id as her screen shows it (logging in as her again here would end her session)
    ann_id = re.search(rf"\* connected as {ann} \(user (\d+)\)", tmux.screen(ann)).group(1)  # type: ignore[union-attr]
    tmux.type(bob, f"/msg {ann_id} by number")
    await tmux.shows(ann, f"[{bob} -> you] by number")

    tmux.type(ann, f"/join {other}")
    await tmux.shows(ann, f"* joined room {other} (1 here: {ann})")
    tmux.type(ann, "only ann hears this")
    await tmux.shows(ann, f"[room {other}] {ann}: only ann hears this")
    tmux.type(ann, f"/room {room}")
    await tmux.shows(ann, f"* current room {room}")
    tmux.type(ann, "back in the first room")
    await tmux.shows(bob, f"[room {room}] {ann}: back in the first room")

    tmux.type(bob, f"/join {other}")
    await tmux.shows(bob, f"* joined room {other} (2 here: {ann}, {bob})")
    tmux.type(bob, "bob is here too")
    await tmux.shows(ann, f"[room {other}] {bob}: bob is here too")
    tmux.type(bob, "/who")
    await tmux.shows(bob, f"* room {other}: 2 here: {ann}, {bob}")
    tmux.type(ann, f"/leave {other}")
    await tmux.shows(ann, f"* left room {other}; current room {room}")
    await tmux.shows(bob, f"* {ann} left room {other}")

    tmux.type(bob, "/msg nobody-we-know hello?")
    await tmux.shows(bob, "* unknown user 'nobody-we-know'")
    tmux.type(bob, "/quit")
    await tmux.shows(bob, "EXITED 0")
    # ann logs in somewhere else: this terminal's session ends, and the chat says so and stops
    await login(cluster.api_url, ann, "pw-123456")
    await tmux.shows(ann, "* session ended")
    await tmux.shows(ann, "* closed: refused")
    await tmux.shows(ann, "EXITED 1")

    bob_screen = tmux.screen(bob)
    assert f"* {bob} joined" not in bob_screen  # one's own joins are the "* joined room" lines
    assert "only ann hears this" not in bob_screen  # sent to a room bob was not in yet
    assert bob_screen.count("hello bob") == 1
    assert tmux.screen(ann).count("hi ann, just you") == 1
