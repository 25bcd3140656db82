"""Structured logs for the prediction server: one JSON object per line.

:class:`RequestContextFilter` stamps every record emitted while a request is being handled
with that request's id and, once known, the model and version answering it (from context
variables the app sets), so an error logged deep in a handler carries the same
``request_id`` as the access-log line. ``gyre serve`` installs both on uvicorn's log config.

Access lines (one per request) go through :class:`AccessLogHandler`, which buffers them and
writes them in one call every ``interval`` seconds (0.2 by default) or 64 KiB, from its own
thread: a write per request would cost more than the rest of the line. When that handler is
the access logger's only one, the server hands it the line's fields directly
(:meth:`AccessLogHandler.write_fields`), skipping the ``LogRecord`` — the line is the same.
Lines still buffered are written when the server shuts down; a process killed with
SIGKILL loses at most the last ``interval`` of them (the prediction log is what keeps every
answered request, see ``docs/predictions.md``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, Protocol

from gyre._jsonlog import JsonFormatter

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    orjson = None  # type: ignore[assignment]

__all__ = [
    "ACCESS_LOGGER",
    "AccessLogHandler",
    "JsonFormatter",
    "RequestContextFilter",
    "bind",
    "request_context",
]

ACCESS_LOGGER = "gyre.serving.access"


class Bound(Protocol):
    """What a log record learns of the request being handled (the server's per-request
    info object has these attributes; it fills in model and version once it knows them)."""

    request_id: str
    model: str
    version: str


class _Bound:
    __slots__ = ("model", "request_id", "version")

    def __init__(self, request_id: str, model: str, version: str) -> None:
        self.request_id, self.model, self.version = request_id, model, version


# The request this task is handling.
request_context: ContextVar[Bound | None] = ContextVar("gyre_serving_request", default=None)


def bind(request_id: str, model: str = "", version: str = "") -> None:
    """Set the request this task is handling (for log records emitted from here on)."""
    request_context.set(_Bound(request_id, model, version))


class RequestContextFilter(logging.Filter):
    """Adds ``request_id``, ``model`` and ``version`` to records that do not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_context.get()
        if current is not None:
            for key in ("request_id", "model", "version"):
                value = getattr(current, key)
                if value and not hasattr(record, key):
                    setattr(record, key, value)
        return True


def _stamp_now(formatter: JsonFormatter) -> str:
    now = time.time()
    return formatter._ts(now, (now - int(now)) * 1000)


class AccessLogHandler(logging.Handler):
    """Buffered JSON lines on a stream (standard error by default); see the module docstring.

    ``interval``: seconds a line may wait in the buffer (a background thread writes it then);
    the buffer is also written as soon as it holds ``max_bytes``.
    """

    def __init__(
        self, stream: Any = None, interval: float = 0.2, max_bytes: int = 64 * 1024
    ) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.max_bytes = max_bytes
        self._json = JsonFormatter()
        self._lines: list[str] = []
        self._size = 0
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._run, name="gyre-access-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._add(self.format(record) if self.formatter else self._json.format(record))
        except Exception:
            self.handleError(record)

    def write_fields(self, msg: str, fields: dict[str, Any]) -> None:
        """The line ``JsonFormatter`` makes of an INFO record of the access logger with
        message ``msg`` and ``fields`` as its extra fields, without building the record."""
        line = {
            "ts": _stamp_now(self._json),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": msg,
            **fields,
        }
        if orjson is not None:
            try:
                self._add(orjson.dumps(line, default=str).decode())
                return
            except TypeError:
                pass
        self._add(json.dumps(line, default=str, separators=(",", ":")))

    def _add(self, line: str) -> None:
        with self._buffer_lock:
            self._lines.append(line)
            self._size += len(line) + 1
            full = self._size >= self.max_bytes
        if full:
            self.flush()

    def flush(self) -> None:
        with self._buffer_lock:
            lines, self._lines, self._size = self._lines, [], 0
        if not lines:
            return
        with self._write_lock:  # one writer at a time; lines stay in order
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # the stream went away (closed at exit): drop
                pass

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def fast_access_handler(logger: logging.Logger) -> AccessLogHandler | None:
    """The handler to give access lines to directly, when ``logger`` writes them only
    through one :class:`AccessLogHandler` of its own (no filters, no propagation);
    None means: log them as records."""
    if logger.propagate or logger.filters or len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if type(handler) is not AccessLogHandler or handler.filters:
        return None
    if handler.formatter is not None and type(handler.formatter) is not JsonFormatter:
        return None
    return handler
