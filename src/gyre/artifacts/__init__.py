"""Artifacts: content-addressed blobs plus manifests, in a folder or any S3-compatible store.

    >>> from gyre.artifacts import open_artifact_store, upload, download
    >>> store = open_artifact_store("s3://bucket/gyre")  # doctest: +SKIP
    >>> upload(store, "runs/42", "model/")  # doctest: +SKIP
    >>> download(store, "runs/42", "restored/")  # doctest: +SKIP

Backends register in the entry-point group ``gyre.artifact_stores`` under their URI scheme,
built-ins included; each is imported only when a URI of its scheme is opened.
"""

from __future__ import annotations

import re
from typing import cast

from gyre import _plugins
from gyre.artifacts._paths import validate_artifact_path
from gyre.artifacts._protocol import ArtifactStore, BlobRef
from gyre.artifacts._transfer import download, list_artifacts, upload
from gyre.errors import InvalidArgument

__all__ = [
    "ArtifactStore",
    "BlobRef",
    "close_artifact_store",
    "download",
    "list_artifacts",
    "open_artifact_store",
    "upload",
    "validate_artifact_path",
]

# At least two letters, so a Windows drive ("C:/...") reads as a path, not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


def open_artifact_store(uri: str) -> ArtifactStore:
    """The artifact store ``uri`` names: a folder path or ``file://`` URI, ``s3://bucket/prefix``,
    or ``http(s)://`` for a ``gyre server``; other schemes come from installed plugins.

    >>> open_artifact_store("/tmp/gyre-artifacts")
    LocalArtifactStore('/tmp/gyre-artifacts')
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument(
            f"artifact URI {uri!r} is empty",
            hint="use a folder path, file:///path, s3://bucket/prefix or http(s)://server",
        )
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else "file"
    factory = _plugins.load("gyre.artifact_stores", scheme, what="artifact URI", value=uri)
    return cast(ArtifactStore, factory(uri))


def close_artifact_store(store: object) -> None:
    """Release what ``store`` holds (an HTTP store's pooled connections, an S3 client's):
    its ``close()``, when it has one. The :class:`ArtifactStore` protocol asks for none, so
    a plugin's store may have nothing to close."""
    close = getattr(store, "close", None)
    if callable(close):
        close()
