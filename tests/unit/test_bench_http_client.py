"""The benchmark's lean HTTP client against a small loopback server that answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from gochat_py.bench import http_client
from gochat_py.bench.http_client import HttpClient, HttpError

Answer = Callable[[bytes], list[bytes]]  # request body -> the pieces written back


def envelope(body: bytes, extra: bytes = b"") -> list[bytes]:
    payload = b'{"code":0,"data":' + body + b',"message":"ok"}'
    return [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra,
        b"Content-Length: %d\r\n\r\n" % len(payload),
        payload,
    ]


class Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                self.requests.append(head.split(b"\r\n")[0])
                for piece in self.answer(body):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)  # the answer arrives in several reads
                if b"close" in body:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], asyncio.Future]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> tuple[Server, str]:
        state = Server(answer)
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
        servers.append(server)
        return state, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


async def test_answers_come_back_whole_over_one_kept_alive_connection(serve) -> None:
    state, url = await serve(lambda body: envelope(body))
    client = HttpClient(url, connections=4, timeout=5)
    for n in range(5):
        status, raw = await client.post("/push/push", b"%d" % n)
        assert status == 200 and raw == b'{"code":0,"data":%d,"message":"ok"}' % n
    assert state.connections == 1
    assert state.requests == [b"POST /push/push HTTP/1.1"] * 5
    await client.close()


async def test_concurrent_requests_use_at_most_the_connections_allowed(serve) -> None:
    state, url = await serve(lambda body: envelope(body))
    client = HttpClient(url, connections=3, timeout=5)
    answers = await asyncio.gather(*(client.post("/x", b"%d" % n) for n in range(30)))
    assert [raw for _, raw in answers] == [b'{"code":0,"data":%d,"message":"ok"}' % n for n in range(30)]
    assert state.connections <= 3
    await client.close()


async def test_a_connection_the_server_closes_is_not_reused(serve) -> None:
    state, url = await serve(lambda body: envelope(b"1", extra=b"Connection: close\r\n" if b"close" in body else b""))
    client = HttpClient(url, connections=1, timeout=5)
    assert (await client.post("/x", b'"close"'))[0] == 200
    assert (await client.post("/x", b"2"))[0] == 200
    assert state.connections == 2
    await client.close()


async def test_a_connection_idle_too_long_is_replaced(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    state, url = await serve(lambda body: envelope(body))
    client = HttpClient(url, connections=1, timeout=5)
    await client.post("/x", b"1")
    monkeypatch.setattr(http_client, "IDLE_REUSE", 0.0)
    await client.post("/x", b"2")
    assert state.connections == 2
    await client.close()


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([b"SSH-2.0-OpenSSH\r\n\r\n"], "not an HTTP answer"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], "chunked"),
        ([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"], "without Content-Length"),
    ],
)
async def test_answers_it_cannot_read_are_errors(serve, pieces: list[bytes], error: str) -> None:
    _, url = await serve(lambda body: pieces)
    client = HttpClient(url, connections=1, timeout=5)
    with pytest.raises(HttpError, match=error):
        await client.post("/x", b"1")
    await client.close()


async def test_a_server_that_never_answers_times_out(serve) -> None:
    _, url = await serve(lambda body: [])
    client = HttpClient(url, connections=1, timeout=0.2)
    with pytest.raises(TimeoutError):
        await client.post("/x", b"1")
    await client.close()
