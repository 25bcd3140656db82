"""The outermost layer of the app: body-size limit and the last-resort error handler.

A pure ASGI middleware (no per-request objects beyond what it needs), because it sits on
the log-batch hot path.

- Request bodies (except streamed artifact uploads) larger than ``max_body`` get 413
  ``PAYLOAD_TOO_LARGE``: at once when ``Content-Length`` says so, otherwise as soon as the
  bytes received pass the limit. The body is never read past the limit.
- An exception nobody handled is logged with a request id, and the client gets 500
  ``INTERNAL_ERROR`` naming only that id: a response never carries a traceback.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gyre.errors import GyreError, PayloadTooLarge, error_body

__all__ = ["GuardMiddleware", "json_error"]

logger = logging.getLogger("gyre.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def json_error(
    send: Send, err: GyreError, *, status: int | None = None, request_id: str | None = None
) -> None:
    """Send ``err`` as a complete JSON error response."""
    body = json.dumps(error_body(err), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send(
        {
            "type": "http.response.start",
            "status": status or err.http_status,
            "headers": headers,
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Limits JSON request bodies to ``max_body`` bytes and turns crashes into a clean 500.

    ``unlimited_prefixes``: paths whose body is streamed elsewhere (artifact uploads) and is
    not limited here.
    """

    def __init__(
        self, app: ASGIApp, *, max_body: int, unlimited_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.unlimited_prefixes = unlimited_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if scope["method"] in _BODY_METHODS and not scope["path"].startswith(
                self.unlimited_prefixes
            ):
                receive = await self._buffered_receive(scope, receive)
            await self.app(scope, receive, tracking_send)
        except _TooLarge as too_large:
            if not started:
                await json_error(send, too_large.error)
        except Exception:
            request_id = secrets.token_hex(6)
            logger.exception(
                "internal error (request id %s) in %s %s",
                request_id,
                scope["method"],
                scope["path"],
            )
            if not started:
                err = GyreError(f"internal error (request id {request_id})")
                await json_error(send, err, request_id=request_id)

    async def _buffered_receive(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body (at most ``max_body`` bytes) and replay it to the app."""
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break
                if declared > limit:
                    raise _TooLarge(self._error(f"{declared} bytes"))
                break

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                first = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge(self._error(f"more than {limit} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        return replay

    def _error(self, got: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body of {got} is larger than the limit of {self.max_body} bytes",
            hint="send smaller batches, or raise GYRE_MAX_REQUEST_BYTES on the server",
        )


class _TooLarge(Exception):
    def __init__(self, error: PayloadTooLarge) -> None:
        super().__init__(error.message)
        self.error = error
