"""Artifact routes: streamed blob upload and download, existence checks, manifests.

An upload is streamed to a spooled temporary file (memory up to ``SPOOL_BYTES``, disk past
it) and from there to ``ArtifactStore.put_blob``: a body is never held whole in memory and
is not subject to the JSON body limit. A download streams ``open_blob`` chunk by chunk.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO, cast

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.params import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from gyre.artifacts._protocol import ArtifactStore, BlobRef
from gyre.errors import GyreError, InvalidArgument
from gyre.server._models import AppendManifestRequest
from gyre.server._responses import JSON

__all__ = ["BLOBS_PATH", "artifacts_router"]

logger = logging.getLogger("gyre.server")

BLOBS_PATH = "/artifacts/blobs"
SPOOL_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024

Digest = Annotated[str, Path(description="Lowercase hex sha256 of the blob.")]
# A query parameter, not a path segment: scopes hold slashes, and no URL normalisation
# may touch them ("a/../b") before the store validates them.
ScopeQuery = Annotated[str, Query(description="Manifest scope, e.g. runs/<run_id>.")]


def _ref_dict(ref: BlobRef) -> dict[str, str | int]:
    return {"digest": ref.digest, "size": ref.size}


async def _iter_blob(stream: BinaryIO, digest: str) -> AsyncIterator[bytes]:
    # Async, so that the ``finally`` also runs when a client hangs up mid-download.
    try:
        while chunk := await run_in_threadpool(stream.read, CHUNK_BYTES):
            yield chunk
    except GyreError as err:
        # Headers are gone already; ending the body early is all that is left. The client
        # verifies the digest of what it received, so it detects the damage itself.
        logger.error("while streaming blob %s: %s", digest, err)
    finally:
        stream.close()


def artifacts_router(
    artifacts: ArtifactStore, *, read: list[Depends], write: list[Depends]
) -> APIRouter:
    """Routes under ``/artifacts``; ``read``/``write`` guard them."""
    router = APIRouter(tags=["artifacts"])

    @router.put(BLOBS_PATH, dependencies=write)
    async def put_blob(request: Request) -> JSON:
        """Store the request body (``application/octet-stream``, streamed) as a blob.

        Answers the blob's ``{digest, size}``; identical bytes are stored once."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            try:
                async for chunk in request.stream():
                    spool.write(chunk)
            except ClientDisconnect:
                raise InvalidArgument("upload interrupted: the client disconnected") from None
            spool.seek(0)
            ref = await run_in_threadpool(artifacts.put_blob, cast(BinaryIO, spool))
        return JSON(_ref_dict(ref))

    @router.head(BLOBS_PATH + "/{digest}", dependencies=read)
    def has_blob(digest: Digest) -> Response:
        """200 if the blob is stored, 404 if not (no body either way)."""
        return Response(status_code=200 if artifacts.has_blob(digest) else 404)

    @router.get(
        BLOBS_PATH + "/{digest}",
        dependencies=read,
        response_class=StreamingResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def get_blob(digest: Digest) -> StreamingResponse:
        """The blob's bytes, streamed; 404 NOT_FOUND naming the digest."""
        stream = artifacts.open_blob(digest)
        return StreamingResponse(_iter_blob(stream, digest), media_type="application/octet-stream")

    @router.post("/artifacts/manifests", status_code=204, dependencies=write)
    def append_manifest(body: AppendManifestRequest) -> Response:
        """Record ``entries`` (logical path -> blob) in ``scope``; later entries win."""
        entries = {path: BlobRef(ref.digest, ref.size) for path, ref in body.entries.items()}
        artifacts.append_manifest(body.scope, entries)
        return Response(status_code=204)

    @router.get("/artifacts/manifests", dependencies=read)
    def read_manifest(scope: ScopeQuery) -> JSON:
        """The merged manifest of ``scope``: ``{"scope", "entries": {path: {digest, size}}}``."""
        merged = artifacts.read_manifest(scope)
        entries = {p: _ref_dict(r) for p, r in merged.items()}
        return JSON({"scope": scope, "entries": entries})

    return router
