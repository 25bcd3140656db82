"""The HTTP protocol `gyre serve` gives uvicorn (``gyre.serving._protocol``): a response's
head reaches the socket with its body in one write (under load, with the other answers of
the loop's pass), and nothing about HTTP changes: keep-alive, pipelining, streamed bodies,
closing."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from gyre.serving._protocol import _HOLD_LIMIT, _HoldingTransport
from tests.test_serving_process import _ServerThread


class _Recorder(asyncio.Transport):
    """A transport that records each system write it would make."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: Any) -> None:  # one writev
        self.writes.append(b"".join(bytes(c) for c in chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


@pytest.mark.anyio
async def test_a_lone_response_leaves_in_one_write_when_its_body_is_written() -> None:
    recorder = _Recorder()
    transport = _HoldingTransport(recorder, asyncio.get_running_loop(), busy=lambda: False)
    transport.write(HEAD)
    assert recorder.writes == [] and transport.get_write_buffer_size() == len(HEAD)
    transport.write(b"{}")
    assert recorder.writes == [HEAD + b"{}"], "head and body together, with no wait"
    await asyncio.sleep(0)
    assert len(recorder.writes) == 1, "nothing is sent twice"
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # a head with no body after it
    await asyncio.sleep(0)  # ... leaves when the loop's pass ends
    assert recorder.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.mark.anyio
async def test_while_others_are_answered_writes_wait_for_the_end_of_the_pass() -> None:
    recorder = _Recorder()
    transport = _HoldingTransport(recorder, asyncio.get_running_loop(), busy=lambda: True)
    for body in (b"{}", b"[]"):  # two pipelined answers in one pass
        transport.write(HEAD)
        transport.write(body)
    assert recorder.writes == []
    await asyncio.sleep(0)
    assert recorder.writes == [HEAD + b"{}" + HEAD + b"[]"]


@pytest.mark.anyio
async def test_held_bytes_stay_bounded_and_close_sends_them_first() -> None:
    recorder = _Recorder()
    transport = _HoldingTransport(recorder, asyncio.get_running_loop(), busy=lambda: True)
    chunk = b"x" * (_HOLD_LIMIT // 4 + 1)
    for _ in range(4):
        transport.write(chunk)  # no await between writes: a streamed body in one step
    assert recorder.writes == [chunk * 4], "past the limit, a write goes through at once"
    transport.write(b"tail")
    transport.close()
    assert recorder.writes[-1] == b"tail" and recorder.closed
    transport.write(b"after close")
    await asyncio.sleep(0)
    assert recorder.writes[-1] == b"tail", "nothing is written to a closing connection"


async def _streaming_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers GET /stream with 4 MiB in 64 chunks sent back to back, anything else with
    its path (the body of a POST appended)."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    if scope["path"] == "/v2/health/ready":
        body = b'{"ready": true}'
    elif scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(64):
            chunk = bytes([65 + i % 26]) * 65536
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    else:
        body = scope["path"].encode()
        message = await receive()
        body += message.get("body", b"")
    length = str(len(body)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", length)]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def stream_server() -> Any:
    with _ServerThread(_streaming_app) as server:
        yield server


def test_a_streamed_body_arrives_whole(stream_server: Any) -> None:
    with httpx.Client() as client, client.stream("GET", f"{stream_server.url}/stream") as answer:
        received = b"".join(answer.iter_bytes())
    expected = b"".join(bytes([65 + i % 26]) * 65536 for i in range(64))
    assert len(received) == len(expected) and received == expected


def test_keep_alive_and_pipelined_requests_are_answered_in_order(stream_server: Any) -> None:
    requests = b"".join(
        f"POST /r{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n#{i}".encode()
        for i in range(3)
    )
    with socket.create_connection(("127.0.0.1", stream_server.port), timeout=10) as sock:
        sock.sendall(requests)  # three requests in one segment
        received = b""
        while received.count(b"HTTP/1.1 200") < 3 or not received.endswith(b"#2"):
            data = sock.recv(65536)
            assert data, f"connection closed after {received!r}"
            received += data
        bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [b"/r0#0", b"/r1#1", b"/r2#2"]
        # the connection stays open for the next one, and Connection: close closes it
        last = b"POST /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n"
        sock.sendall(last + b"\r\n")
        tail = b""
        while data := sock.recv(65536):
            tail += data
        assert tail.startswith(b"HTTP/1.1 200") and tail.endswith(b"/last")
