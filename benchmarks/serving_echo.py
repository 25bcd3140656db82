"""The bare-ASGI ceiling of the serving benchmark: an app that does no work.

``benchmarks/serving.py`` runs it under uvicorn with the same settings as ``gyre serve``
(workers, event loop, HTTP parser, no access log) and drives it with the same requests as
the model servers. It reads each request's body to the end, as a real server must, and
answers every POST with the same small JSON document, shaped like an Open Inference Protocol
v2 answer for one row; ``GET /v2/health/ready`` answers 200 so the benchmark can poll it. No
Python ASGI server answers these requests faster on this machine with these settings, so the
throughput measured here is the ceiling a model server's own overhead is judged against.

Run it by hand, as the benchmark does (the settings of ``gyre serve``, its way of listening
with several workers included: see ``main``)::

    python benchmarks/serving_echo.py --port 8000 [--workers 2]
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ANSWER", "app", "listen_options", "serve_like_gyre"]

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


def serve_like_gyre(app: str, host: str, port: int, workers: int) -> None:
    """Serve the ASGI app ``app`` ("module:attribute") the way ``gyre serve`` serves its
    own (src/gyre/cli/_serve_cmds.py): ``gyre.serving._listen.run`` (uvicorn; each of
    several workers on a socket of its own), uvloop, uvicorn's httptools protocol as gyre
    gives it (a response's writes sent together), lifespan on, no uvicorn access log, no
    Server header, 5 s keep-alive. The workers import the module by name: run it with its
    folder on ``PYTHONPATH``."""
    from gyre.serving._listen import run
    from gyre.serving._protocol import HOLDING_PROTOCOL

    run(app, host=host, port=port, workers=workers, loop="uvloop", http=HOLDING_PROTOCOL,
        lifespan="on", access_log=False, server_header=False, timeout_keep_alive=5,
        log_level="warning")  # fmt: skip


def listen_options(parser: argparse.ArgumentParser) -> None:
    """``--host``, ``--port`` and ``--workers``, as :func:`serve_like_gyre` takes them."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)


def main(argv: list[str] | None = None) -> None:
    """Serve ``app`` as ``gyre serve`` serves its app (see :func:`serve_like_gyre`)."""
    parser = argparse.ArgumentParser(description="the serving benchmark's bare-ASGI ceiling")
    listen_options(parser)
    args = parser.parse_args(argv)
    serve_like_gyre("serving_echo:app", args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
