"""The artifact store seam: content-addressed blobs plus append-only manifests.

A blob is stored once under its sha256, whatever its name. A manifest maps logical paths
(``model/model.skops``) to blobs, within a *scope* such as ``runs/<run_id>``. Manifests are
written as append-only fragments so concurrent writers to one scope never lose each other's
entries; reading merges the fragments in order (a later entry for a path wins).

Every implementation passes :func:`gyre.testing.check_artifact_store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["ArtifactStore", "BlobRef"]


@dataclass(frozen=True, slots=True)
class BlobRef:
    digest: str  # lowercase hex sha256
    size: int


@runtime_checkable
class ArtifactStore(Protocol):
    uri: str

    def put_blob(self, src: BinaryIO) -> BlobRef:
        """Store the bytes read from ``src`` (streamed; bounded memory) and return their ref.

        Identical bytes are stored once."""

    def open_blob(self, digest: str) -> BinaryIO:
        """A stream of the blob; reading it to the end raises IntegrityError if the bytes do
        not hash to ``digest``. NotFound naming the digest if absent."""

    def has_blob(self, digest: str) -> bool: ...

    def append_manifest(self, scope: str, entries: dict[str, BlobRef]) -> None:
        """Record ``entries`` (logical path -> blob) in ``scope``."""

    def read_manifest(self, scope: str) -> dict[str, BlobRef]:
        """The merged manifest of ``scope``; empty if nothing was ever recorded."""
