"""The two errors only serving raises, and how an error becomes a response.

``Overloaded`` (429, ``OVERLOADED``) and ``DeadlineExceeded`` (504, ``DEADLINE_EXCEEDED``)
belong in :mod:`gyre.errors`, in the ``GyreError`` tree and in docs/errors.md. Until they
move there they are kept *outside* the tree (the tests that walk it would otherwise fail
whenever serving is imported first) but answer with the same body shape; every serving
module imports them from here, so the move is a change of this file only.

Two body shapes: the Open Inference Protocol routes (``/v2/...``) answer
``{"error": "<message> (<hint>)"}`` as the protocol requires; gyre's own routes answer
:func:`gyre.errors.error_body`. Both carry ``X-Request-ID``; a 429/503 also ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gyre.errors import BackendUnavailable, GyreError, Unauthorized, error_body
from gyre.serving._json import dumps

__all__ = [
    "DeadlineExceeded",
    "Overloaded",
    "ServingError",
    "error_response_parts",
    "is_oip_path",
]


class ServingError(Exception):
    """Base of the two (see the module docstring); shaped like :class:`GyreError`."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class Overloaded(ServingError):
    """Too much work is queued: the request was refused at once, retry shortly."""

    code = "OVERLOADED"
    http_status = 429

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class DeadlineExceeded(ServingError):
    """A request did not finish within the server's per-request timeout."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504


def is_oip_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def _body(err: GyreError | ServingError) -> dict[str, Any]:
    if isinstance(err, GyreError):
        return error_body(err)
    body: dict[str, Any] = {"error_code": err.code, "message": err.message}
    if err.hint:
        body["hint"] = err.hint
    return body


def error_response_parts(
    err: GyreError | ServingError, path: str, *, status: int | None = None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, JSON body and extra headers for ``err`` answered on ``path``."""
    body: dict[str, Any] = {"error": str(err)} if is_oip_path(path) else _body(err)
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if isinstance(err, Overloaded):
        headers.append((b"retry-after", str(err.retry_after).encode()))
    elif isinstance(err, BackendUnavailable):
        headers.append((b"retry-after", b"1"))
    elif isinstance(err, Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))
    return status or err.http_status, dumps(body), headers
