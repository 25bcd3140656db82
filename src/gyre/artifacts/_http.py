"""HttpArtifactStore: the ArtifactStore protocol spoken to a ``gyre server``.

Bytes stream both ways and never sit whole in memory: an upload is an httpx content
generator that hashes as it sends (and checks the digest the server reports), a download is
a streamed response read through :func:`gyre.artifacts._verify.open_verified`, which checks
the sha256 when it reaches the end.
Connection failures and 502/503/504 are retried with back-off for at most ``retry_seconds``
(an upload only when its source can be rewound or nothing was sent yet).

    >>> store = HttpArtifactStore("http://127.0.0.1:5050")  # doctest: +SKIP
    >>> ref = store.put_blob(open("model.skops", "rb"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from gyre._http import RETRY_ERRORS, RETRY_STATUSES, Backoff, make_client
from gyre._http import retry_seconds as retry_seconds_setting
from gyre.artifacts._protocol import BlobRef
from gyre.artifacts._verify import CHUNK_BYTES, open_verified
from gyre.errors import BackendUnavailable, GyreError, IntegrityError, from_body

__all__ = ["HttpArtifactStore"]


class HttpArtifactStore:
    """An ArtifactStore backed by a ``gyre server`` at ``uri`` (``http(s)://host:port``).

    ``token``: API token (default: the setting ``GYRE_TOKEN``). ``retry_seconds`` (default:
    the setting GYRE_HTTP_RETRY_S, 30): the longest a call keeps retrying before
    BackendUnavailable. ``transport``: an httpx transport to use instead of the network
    (tests).
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        *,
        retry_seconds: float | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.uri = uri
        self.retry_seconds = retry_seconds_setting(retry_seconds)
        self._client = make_client(
            uri, "/api/v1/artifacts/", token=token, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"HttpArtifactStore({self.uri!r})"

    def __enter__(self) -> HttpArtifactStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _retrying(
        self, attempt: Callable[[], httpx.Response], *, may_retry: Callable[[], bool] = bool
    ) -> httpx.Response:
        """``attempt()`` until it answers something other than 502/503/504, retrying
        connection failures while ``may_retry()`` and time remain."""
        backoff = Backoff(self.retry_seconds, self.uri)
        while True:
            reason = ""
            try:
                response = attempt()
            except RETRY_ERRORS as exc:
                reason = str(exc) or type(exc).__name__
                if not may_retry() or backoff.exhausted:
                    raise BackendUnavailable(
                        f"gyre server {self.uri!r} is unreachable: {reason}",
                        hint="check that `gyre server` is running there "
                        "and GYRE_ARTIFACT_URI names it",
                    ) from None
            else:
                if (
                    response.status_code not in RETRY_STATUSES
                    or not may_retry()
                    or backoff.exhausted
                ):
                    return response
                response.close()
                reason = f"HTTP {response.status_code}"
            backoff.wait(reason)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._retrying(
            lambda: self._client.request(method, path, **kwargs), may_retry=lambda: True
        )

    def _error(self, response: httpx.Response) -> GyreError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:200]
        if response.status_code in RETRY_STATUSES and not isinstance(body, dict):
            return BackendUnavailable(
                f"gyre server {self.uri!r} answered HTTP {response.status_code}",
                hint="the server or a proxy in front of it is overloaded or restarting",
            )
        return from_body(body, response.status_code)

    # -- blobs ---------------------------------------------------------------------------

    def put_blob(self, src: BinaryIO) -> BlobRef:
        """Stream ``src`` to the server; IntegrityError if the server hashed other bytes."""
        start = src.tell() if src.seekable() else None
        sent_any = False
        sha = hashlib.sha256()
        size = 0

        def body() -> Iterator[bytes]:
            nonlocal sent_any, sha, size
            if start is not None:
                src.seek(start)
            sha, size = hashlib.sha256(), 0
            while chunk := src.read(CHUNK_BYTES):
                sent_any = True
                sha.update(chunk)
                size += len(chunk)
                yield chunk

        response = self._retrying(
            lambda: self._client.put(
                "blobs", content=body(), headers={"Content-Type": "application/octet-stream"}
            ),
            may_retry=lambda: start is not None or not sent_any,
        )
        if not response.is_success:
            raise self._error(response)
        answer = response.json()
        ref = BlobRef(str(answer["digest"]), int(answer["size"]))
        if ref.digest != sha.hexdigest() or ref.size != size:
            raise IntegrityError(
                f"server stored blob {ref.digest} ({ref.size} bytes) but the bytes sent hash "
                f"to {sha.hexdigest()} ({size} bytes)",
                hint="the upload was damaged in transit; try again",
            )
        return ref

    def open_blob(self, digest: str) -> BinaryIO:
        """The blob as a stream; reading it to the end verifies its sha256."""
        path = _blob_path(digest)
        response = self._retrying(
            lambda: self._client.send(self._client.build_request("GET", path), stream=True),
            may_retry=lambda: True,
        )
        if not response.is_success:
            try:
                response.read()
            finally:
                response.close()
            raise self._error(response)
        return open_verified(_ResponseBody(response, digest, self.uri), digest, self.uri)

    def has_blob(self, digest: str) -> bool:
        response = self._request("HEAD", _blob_path(digest))
        if response.status_code == 404:
            return False
        if not response.is_success:
            raise self._error(response)
        return True

    # -- manifests -----------------------------------------------------------------------

    def append_manifest(self, scope: str, entries: dict[str, BlobRef]) -> None:
        # A retried append only repeats the same entries, which merging makes harmless.
        body = {
            "scope": scope,
            "entries": {p: {"digest": r.digest, "size": r.size} for p, r in entries.items()},
        }
        response = self._request("POST", "manifests", json=body)
        if not response.is_success:
            raise self._error(response)

    def read_manifest(self, scope: str) -> dict[str, BlobRef]:
        response = self._request("GET", "manifests", params={"scope": scope})
        if not response.is_success:
            raise self._error(response)
        entries = response.json()["entries"]
        return {p: BlobRef(r["digest"], int(r["size"])) for p, r in entries.items()}

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _blob_path(digest: str) -> str:
    # Dots escaped too, so that no URL normalisation turns a bad digest ("..") into another
    # route: the server's store must see it, and refuse it by name.
    return "blobs/" + quote(digest, safe="").replace(".", "%2E")


class _ResponseBody:
    """A streamed response body with ``read(n)``, as ``open_verified`` wants its source."""

    def __init__(self, response: httpx.Response, digest: str, uri: str) -> None:
        self._response = response
        self._chunks = response.iter_bytes(CHUNK_BYTES)
        self._digest = digest
        self._uri = uri
        self._pending = b""

    def read(self, size: int, /) -> bytes:
        if not self._pending:
            try:
                self._pending = next(self._chunks, b"")
            except httpx.TransportError as exc:
                raise BackendUnavailable(
                    f"lost the connection to gyre server {self._uri!r} while reading blob "
                    f"{self._digest}: {exc or type(exc).__name__}",
                    hint="read the blob again",
                ) from None
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    def close(self) -> None:
        self._response.close()
