"""uvicorn's httptools protocol, with a response's head and body sent in one write.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and its body when the app sends ``http.response.body``: two
``write`` calls, and with uvloop two system calls, each pushing a TCP segment through the
kernel (on loopback and on a busy host, the most expensive thing a small answer costs).
:class:`HttpProtocol` is that protocol with one change, in the connection's transport:

* A write is held until the next one, and the two are sent together (one ``writelines``,
  one ``writev``): a response's head leaves with its body, when the body is written.
* While the server is answering other requests too (on any connection), writes are held
  until the event loop's pass ends (``loop.call_soon``) and sent then in one call: under
  load the answers of a pass leave together, after the Python work of the pass, which
  measured 15-20% less server CPU per request than sending each as it is written. A lone
  request is not held for the pass: that would add a loop pass to its latency.
* Anything still held when the pass ends is sent then; past ``_HOLD_LIMIT`` bytes held a
  write goes through at once with what is held, so memory stays bounded and a streamed
  body (``POST /batch``) reaches the transport, which pauses the protocol when its buffer
  fills, as before. ``close`` and ``write_eof`` send what is held first.

HTTP parsing, keep-alive, pipelining, flow control and the ASGI interface stay uvicorn's.
``gyre serve`` gives uvicorn this class (``http=``); the serving benchmark's bare-ASGI
ceiling runs under it too, so that the ceiling stays the same server with no app work.
See docs/adr/0006-one-write-per-response.md for the measurements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import uvicorn

__all__ = ["HOLDING_PROTOCOL", "HttpProtocol", "thread_config"]

# what uvicorn's ``--http`` / ``http=`` takes: the class, importable in every worker
HOLDING_PROTOCOL = "gyre.serving._protocol:HttpProtocol"

# Bytes held before a write goes through at once, with what is held (a response up to
# this size leaves in one system call; a larger or streamed one as it comes).
_HOLD_LIMIT = 64 * 1024


class _HoldingTransport:
    """A transport that sends its writes in pairs, or, while other requests are being
    answered, at the end of the event loop's pass (see the module docstring)."""

    __slots__ = ("_busy", "_held", "_held_bytes", "_loop", "_scheduled", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._busy = busy
        self._held: list[bytes | bytearray | memoryview] = []
        self._held_bytes = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > _HOLD_LIMIT or (len(held) > 1 and not self._busy()):
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Send what is held now (dropped when the connection is already closing)."""
        held = self._held
        if not held:
            return
        self._held = []
        self._held_bytes = 0
        if self._transport.is_closing():
            return
        if len(held) == 1:
            self._transport.write(held[0])
        else:
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, pause_reading, abort, ...
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`_HoldingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tasks = self.tasks  # the server's requests being answered now, on every connection
        holding: Any = _HoldingTransport(
            cast(asyncio.Transport, transport), self.loop, lambda: len(tasks) > 1
        )
        super().connection_made(holding)


def thread_config(app: Any, **options: Any) -> uvicorn.Config:
    """The uvicorn settings of a server run in a thread (``gyre demo``, the tests): the
    loop and HTTP protocol `gyre serve` runs, lifespan on, no logging config or access
    log of uvicorn's; ``options`` (a port, ...) on top."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http=HOLDING_PROTOCOL,
        **options,
    )
