"""The bare-ASGI ceiling of the serving benchmark: an app that does no work.

``benchmarks/serving.py`` runs it under uvicorn with the same settings as ``gyre serve``
(workers, event loop, HTTP parser, no access log) and drives it with the same requests as
the model servers. It reads each request's body to the end, as a real server must, and
answers every POST with the same small JSON document, shaped like an Open Inference Protocol
v2 answer for one row; ``GET /v2/health/ready`` answers 200 so the benchmark can poll it. No
Python ASGI server answers these requests faster on this machine with these settings, so the
throughput measured here is the ceiling a model server's own overhead is judged against.

Run it by hand with::

    uvicorn serving_echo:app --app-dir benchmarks --port 8000 --no-access-log
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ANSWER", "app"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER = (
    b'{"model_name":"echo","id":"0","outputs":'
    b'[{"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}'
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
_READY_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """A raw ASGI 3 application: lifespan events acknowledged, every HTTP request answered."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body: a model server has to read it too
        message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": _READY_HEADERS})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
