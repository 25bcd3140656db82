"""The outermost layer of the serving app, pure ASGI because every request crosses it.

Per request it: takes ``X-Request-ID`` from the client (or makes one) and echoes it, with
``X-Gyre-Model-Version`` once a handler has chosen the model (the version that answered,
a canary's included); refuses work past ``max_inflight`` concurrent requests (503 +
``Retry-After``); checks the bearer token when auth is on (health probes are open;
``/admin/*`` needs the ``admin`` scope); enforces the body limit (413, at once when
``Content-Length`` says so, else as soon as the bytes pass it; ``/batch`` uploads have
their own, larger limit; a gzip or deflate body is decompressed, the limit applying to
what it decompresses to); turns a crash into a clean 500 naming only the request id; and
writes one structured access-log line and the request metrics when the response is done.

The routes every prediction takes (``POST /v2/models/{name}/infer`` and ``POST
/predict/{name}``, see :class:`FastRoutes`) are dispatched here directly, without the
Starlette router's route-by-route regex matching and wrapping layers; every other path
goes through the router. Both answer the same, errors included.
"""

from __future__ import annotations

import logging
import random
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Collection, MutableMapping, Sequence
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gyre.errors import BackendUnavailable, GyreError, InvalidArgument, NotFound, PayloadTooLarge
from gyre.serving._auth import ADMIN_SCOPE, SCOPE, TokenGate
from gyre.serving._errors import error_response_parts
from gyre.serving._logging import ACCESS_LOGGER, fast_access_handler, request_context
from gyre.serving._telemetry import Telemetry

__all__ = ["CONTEXT_KEY", "Call", "FastRoutes", "Front", "RequestInfo", "new_request_id"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTEXT_KEY = "gyre.request"
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
# ':' is left out: the log names row i of a request of several rows '<request id>:<i>', so
# a client id 'a:1' would be row 1 of request 'a' (a new id is made for such a request)
_VALID_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")

logger = logging.getLogger("gyre.serving")
access = logging.getLogger(ACCESS_LOGGER)
_INFO = logging.INFO
_ACCESS_MSG = "%s %s %d"


def new_request_id() -> str:
    """16 random hex digits. Ids route canaries and join labels; they are not secrets, so
    the process's PRNG (reseeded in every forked worker) is enough, and it costs no
    system call, unlike ``secrets``."""
    return f"{random.getrandbits(64):016x}"


class FastRoutes(Protocol):
    """The hot routes, matched without the router: ``match`` returns the endpoint for
    ``scope`` and sets ``scope["path_params"]``, or None for everything else. The endpoint
    gets a :class:`Call` (what it reads of a Starlette ``Request``, without building one)
    and returns a Starlette ``Response``, which the front sends itself."""

    def match(self, scope: Scope) -> Callable[[Any], Awaitable[Any]] | None: ...


class _Headers:
    """The one lookup the prediction routes make of the request headers."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self._raw:
            if k == key:
                return v.decode("latin-1")
        return default


class Call:
    """A request on a hot route: the parts of Starlette's ``Request`` the prediction
    handlers use (``scope``, ``path_params``, ``headers.get``, ``query_params.get``,
    ``await body()``), without building its header and query mappings per request."""

    __slots__ = ("_body", "_receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self._body: bytes | None = None

    @property
    def path_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.scope["path_params"]
        return params

    @property
    def headers(self) -> _Headers:
        return _Headers(self.scope["headers"])

    @property
    def query_params(self) -> dict[str, str]:
        raw: bytes = self.scope.get("query_string", b"")
        if not raw:
            return {}
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))

    async def body(self) -> bytes:
        """The whole body (read once, kept); ClientDisconnect if the client went away."""
        if self._body is not None:
            return self._body
        message = await self._receive()
        kind = message["type"]
        if kind == "http.request" and not message.get("more_body", False):
            self._body = message.get("body", b"")
            return self._body
        chunks: list[bytes] = []
        while True:
            if kind == "http.disconnect":
                raise ClientDisconnect
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
            message = await self._receive()
            kind = message["type"]
        self._body = b"".join(chunks)
        return self._body


class RequestInfo:
    """What the front and the handler share about one request."""

    __slots__ = ("endpoint", "model", "request_id", "rows", "started", "variant", "version")

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started
        self.model = ""
        self.version = ""
        self.variant = "primary"
        self.endpoint = "other"
        self.rows = 0

    def bind(self, model: str, version: str, endpoint: str, variant: str = "primary") -> None:
        self.model, self.version, self.endpoint = model, version, endpoint
        self.variant = variant  # the log context is this object: nothing to set


_MODEL_PATH = re.compile(r"/(?:v2/models|predict|batch|feedback)/([^/]+)")


def _endpoint(path: str) -> str:
    if path.endswith("/infer"):
        return "infer"
    if path.startswith("/predict/"):
        return "predict"
    if path.startswith("/batch/"):
        return "batch"
    if path.startswith("/feedback/"):
        return "feedback"
    if path.startswith("/v2/health"):
        return "health"
    if path.startswith("/v2"):
        return "metadata"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/admin/"):
        return "admin"
    return "other"


class Front:
    """Wraps the routed app; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry | None,
        gate: TokenGate | None,
        max_body: int,
        max_upload: int,
        max_inflight: int,
        max_inflight_bytes: int = 64 * 1024 * 1024,
        access_log: bool = True,
        fast: FastRoutes | None = None,
        models: Collection[str] = (),
    ) -> None:
        self.app = app
        self.models = frozenset(models)  # the served names (refusals are counted under them)
        self.fast = fast
        self.telemetry = telemetry
        self.gate = gate
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0  # declared bodies of the requests held now (see Limits)
        self.access_log = access_log
        self.inflight = 0

    def _named_model(self, path: str) -> str:
        """The served model a model route's ``path`` names, else "" (so that a name no
        model has never becomes a label)."""
        found = _MODEL_PATH.match(path)
        name = found.group(1) if found else ""
        return name if name in self.models else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        authorization: str | None = None
        declared: int | None = None
        encoding: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_ID.match(candidate):
                    request_id = candidate
            elif key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif key == b"content-encoding":
                encoding = value
        if not request_id:
            request_id = new_request_id()
        info = RequestInfo(request_id, started)
        scope[CONTEXT_KEY] = info
        scope.setdefault("app", self.app)  # the router then raises 404/405 for us to render
        token = request_context.set(info)  # log records read model and version from it
        path: str = scope["path"]
        info.endpoint = _endpoint(path)
        status = 500
        response_started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                if info.version:
                    headers.append((b"x-gyre-model-version", info.version.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.inflight += 1
        if self.telemetry is not None:
            self.telemetry.inflight(1)
        held = 0  # of inflight_bytes, this request's
        try:
            if self.inflight > self.max_inflight:
                raise BackendUnavailable(
                    f"the server is handling its limit of {self.max_inflight} requests",
                    hint="retry after the Retry-After delay, or add workers",
                )
            if self.gate is not None and path not in OPEN_PATHS:
                await self.gate.check(
                    authorization, scope=ADMIN_SCOPE if info.endpoint == "admin" else SCOPE
                )
            limit = self.max_upload if info.endpoint == "batch" else self.max_body
            if declared is not None and declared > limit:
                raise PayloadTooLarge(
                    f"request body of {declared} bytes is over the limit of {limit} bytes",
                    hint="send fewer rows per request, or use POST /batch/{name} for files",
                )
            if declared and info.endpoint != "batch":  # (uploads are spooled to disk)
                if self.inflight_bytes and self.inflight_bytes + declared > self.max_inflight_bytes:
                    raise BackendUnavailable(
                        f"the server holds {self.inflight_bytes} bytes of request bodies; "
                        f"{declared} more would pass its limit of {self.max_inflight_bytes}",
                        hint="retry after the Retry-After delay, send smaller requests, or "
                        "add workers",
                    )
                held = declared
                self.inflight_bytes += held
            endpoint = None
            if self.fast is not None and scope["method"] == "POST":
                endpoint = self.fast.match(scope)
            # With a Content-Length (checked above) the HTTP parser delivers no more bytes
            # than it says; without one (chunked), count them as they come.
            limited = receive if declared is not None else _limited(receive, limit)
            if encoding is not None:
                limited = _decompressed(limited, encoding, limit)
            if endpoint is not None:
                response = await endpoint(Call(scope, limited))
                # sent here, with the front's headers, without wrapping send
                headers = response.raw_headers
                headers.append((b"x-request-id", request_id.encode()))
                if info.version:
                    headers.append((b"x-gyre-model-version", info.version.encode()))
                status = response.status_code
                response_started = True
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
            else:
                await self.app(scope, limited, send_wrapped)
        except GyreError as err:
            if not info.model and err.http_status not in (401, 403):
                # refused before routing (a limit, a version unknown): counted for the
                # model named; not for a client without a token (anyone can send those)
                info.model = self._named_model(path)
            if not response_started:
                await self._error(send_wrapped, err, path)
            else:
                logger.error("request %s failed after its response started: %s", request_id, err)
        except HTTPException as exc:  # the router's own 404 / 405
            target = f"{scope['method']} {path}"
            # a 405 says what the route takes (sorted: the router keeps them in a set)
            allow = ", ".join(
                sorted(filter(None, (exc.headers or {}).get("Allow", "").split(", ")))
            )
            routed: GyreError = (
                NotFound(f"no such route: {target!r}", hint="see GET /v2 and the serving docs")
                if exc.status_code == 404
                else InvalidArgument(
                    f"method not allowed: {target!r}", hint=f"use {allow}" if allow else None
                )
            )
            extra = [(b"allow", allow.encode("latin-1"))] if allow else []
            if not response_started:
                await self._error(send_wrapped, routed, path, status=exc.status_code, extra=extra)
        except Exception:
            logger.exception(
                "internal error (request id %s) in %s %s", request_id, scope["method"], path
            )
            if not response_started:
                crash = GyreError(f"internal error (request id {request_id})")
                await self._error(send_wrapped, crash, path)
        finally:
            self.inflight -= 1
            self.inflight_bytes -= held
            elapsed = time.perf_counter() - started
            if self.telemetry is not None:
                self.telemetry.inflight(-1)
                self.telemetry.request_done(
                    info.model, info.version, info.endpoint, status, elapsed, info.rows
                )
            if self.access_log and access.isEnabledFor(_INFO):
                method = scope["method"]
                fields = {
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                    "model": info.model,
                    "version": info.version,
                    "rows": info.rows,
                    "client": (scope.get("client") or ("", 0))[0],
                }
                handler = fast_access_handler(access)
                if handler is not None:
                    handler.write_fields(f"{method} {path} {status}", fields)
                else:
                    # the record built directly: Logger.info would also walk the stack to
                    # find the caller, which no access line shows
                    args = (method, path, status)
                    record = access.makeRecord(
                        ACCESS_LOGGER, _INFO, __file__, 0, _ACCESS_MSG, args, None, extra=fields
                    )
                    access.handle(record)
            request_context.reset(token)

    async def _error(
        self,
        send: Send,
        err: GyreError,
        path: str,
        *,
        status: int | None = None,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        code, body, headers = error_response_parts(err, path, status=status)
        headers += extra
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_CODINGS = {b"gzip": "gzip", b"x-gzip": "gzip", b"deflate": "deflate"}


def _wrapped(data: bytes) -> bool:
    """Whether ``data`` starts like a zlib or gzip stream (else: raw deflate). A zlib
    header is a deflate method byte and a check byte making the pair a multiple of 31."""
    if data[:2] == b"\x1f\x8b":
        return True
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _decompressed(receive: Receive, encoding: bytes, limit: int) -> Receive:
    """``receive`` with a ``Content-Encoding: gzip`` or ``deflate`` body decompressed (as
    Triton's clients send with ``request_compression_algorithm``), never past ``limit``
    bytes: a small body that would inflate beyond it is refused (413) before it does."""
    coding = encoding.strip().lower()
    if coding in (b"", b"identity"):
        return receive
    name = _CODINGS.get(coding)
    if name is None:
        raise InvalidArgument(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported",
            hint="send the body uncompressed, or compressed with gzip or deflate",
        )
    # 32 + 15: a zlib (deflate) or gzip header, whichever the body starts with; a deflate
    # body without either is raw deflate (RFC 1951), which some clients send for
    # "deflate" although HTTP means the zlib format (RFC 9110, 8.4.1.2): read as such.
    wbits = 47
    inflate: Any = None
    size = 0
    fed = False  # whether any compressed byte came
    head = b""  # the first byte, while the second has not come (the header is two)

    def decompress(data: bytes, last: bool) -> bytes:
        """``data`` decompressed, member after member (a gzip body may hold several)."""
        nonlocal inflate, size, wbits, head
        if inflate is None:
            data, head = head + data, b""
            if len(data) < 2 and not last:
                head = data
                return b""
            if not data:
                return b""
            if name == "deflate" and not _wrapped(data):
                wbits = -15
            inflate = zlib.decompressobj(wbits=wbits)
        parts: list[bytes] = []
        while data:
            try:
                part = inflate.decompress(data, limit + 1 - size)
            except zlib.error as exc:
                raise InvalidArgument(
                    f"the request body is not valid {name} data ({exc})",
                    hint=f"compress the whole body with {name}, or drop Content-Encoding",
                ) from None
            size += len(part)
            parts.append(part)
            if size > limit or inflate.unconsumed_tail:
                raise PayloadTooLarge(
                    f"request body is over the limit of {limit} bytes once decompressed",
                    hint="send fewer rows per request, or use POST /batch/{name} for files",
                )
            data = inflate.unused_data if inflate.eof else b""
            if data:  # the next member
                inflate = zlib.decompressobj(wbits=wbits)
        return b"".join(parts)

    async def decompressed_receive() -> Message:
        nonlocal fed
        message = await receive()
        if message["type"] != "http.request":
            return message
        if not fed and not message.get("body") and not message.get("more_body", False):
            return message  # no body at all (a GET, say): nothing to decompress
        fed = True
        body = decompress(message.get("body", b""), not message.get("more_body", False))
        if not message.get("more_body", False) and (inflate is None or not inflate.eof):
            raise InvalidArgument(
                f"the request body ends before its {name} data does",
                hint=f"send the whole {name} stream",
            )
        return {**message, "body": body}

    return decompressed_receive


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(
                    f"request body is over the limit of {limit} bytes",
                    hint="send fewer rows per request, or use POST /batch/{name} for files",
                )
        return message

    return limited_receive
