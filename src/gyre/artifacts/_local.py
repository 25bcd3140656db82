"""LocalArtifactStore: blobs and manifest fragments in a folder.

Layout under the root folder::

    blobs/ab/cd/abcd...        one read-only file per sha256, written atomically
    manifests/<scope>/<time_ns>-<uuid>.json   append-only fragments, merged in name order
    tmp/                       partial writes (same file system, so the final rename is atomic)

    >>> store = LocalArtifactStore("/tmp/gyre-artifacts")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from gyre.artifacts import _manifest
from gyre.artifacts._paths import validate_digest, validate_scope
from gyre.artifacts._protocol import BlobRef
from gyre.artifacts._verify import copy_hashing, open_verified
from gyre.errors import InvalidArgument, NotFound

__all__ = ["LocalArtifactStore"]


class LocalArtifactStore:
    """An ArtifactStore in the folder ``uri`` names (a plain path or ``file://`` URI).

    Nothing touches the disk until the first write; reading an empty store finds nothing.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.root = _root_of(uri)

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.uri!r})"

    def __enter__(self) -> LocalArtifactStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; here so every store can be closed the same way."""

    # -- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) stored."""
        validate_digest(digest)
        return self.root / "blobs" / digest[:2] / digest[2:4] / digest

    def put_blob(self, src: BinaryIO) -> BlobRef:
        """Store ``src``'s bytes; identical bytes are stored once."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".blob-", dir=tmp_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                ref = copy_hashing(src, out)
                target = self.blob_path(ref.digest)
                # A copy of the wrong size is damaged: let this write replace it.
                if _size_of(target) == ref.size:
                    return ref
                out.flush()
                os.fsync(out.fileno())
                if hasattr(os, "fchmod"):  # blobs never change; make that visible
                    os.fchmod(out.fileno(), 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Concurrent writers of one blob each rename their own complete copy into
            # place; the bytes are identical, so whichever lands last is as good.
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            return ref
        finally:
            tmp.unlink(missing_ok=True)

    def open_blob(self, digest: str) -> BinaryIO:
        """The blob as a stream that verifies its sha256 at EOF; NotFound naming it."""
        path = self.blob_path(digest)
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 - the returned stream owns it
        except FileNotFoundError:
            raise NotFound(
                f"blob {digest} is not in the artifact store {self.uri!r}",
                hint="check the digest, or that this is the store it was uploaded to",
            ) from None
        return open_verified(raw, digest, str(path))

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    # -- manifests -----------------------------------------------------------------------

    def append_manifest(self, scope: str, entries: Mapping[str, BlobRef]) -> None:
        """Record ``entries`` in ``scope`` as one new fragment (nothing is rewritten)."""
        folder = self._manifest_dir(scope)
        checked = _manifest.check_entries(entries)
        if not checked:
            return
        folder.mkdir(parents=True, exist_ok=True)
        name = _manifest.new_fragment_name()
        # Written aside and renamed, so a reader never sees half a fragment.
        tmp = folder / f".{name}.tmp"
        try:
            with open(tmp, "xb") as out:
                out.write(_manifest.encode(checked))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)

    def read_manifest(self, scope: str) -> dict[str, BlobRef]:
        """The merged manifest of ``scope``; empty if nothing was recorded."""
        folder = self._manifest_dir(scope)
        try:
            names = sorted(n for n in os.listdir(folder) if _manifest.FRAGMENT_NAME.fullmatch(n))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return _manifest.merge(
            _manifest.decode((folder / n).read_bytes(), str(folder / n)) for n in names
        )

    def _manifest_dir(self, scope: str) -> Path:
        return self.root / "manifests" / validate_scope(scope)


def _root_of(uri: str) -> Path:
    path = uri
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(
                f"artifact URI {uri!r} names host {parts.netloc!r}",
                hint="a file:// URI names a folder on this machine: file:///path/to/artifacts",
            )
        path = unquote(parts.path)
    if not path:
        raise InvalidArgument(
            f"artifact URI {uri!r} names no folder", hint="use a path or file:///path"
        )
    return Path(path).expanduser().absolute()


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; only POSIX lets a directory be opened for this.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
