"""Hashing while bytes move: a reader that verifies a digest at EOF, and a hashing spool.

Both work in :data:`CHUNK_BYTES` pieces, so memory stays bounded whatever the blob's size.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from gyre.artifacts._protocol import BlobRef
from gyre.errors import IntegrityError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["CHUNK_BYTES", "Readable", "copy_hashing", "open_verified", "spooled"]

CHUNK_BYTES = 1024 * 1024


class Readable(Protocol):
    """Anything with ``read(n)``: files, spools, botocore's StreamingBody."""

    def read(self, size: int, /) -> bytes: ...


class _Closable(Readable, Protocol):
    def close(self) -> None: ...


class _VerifyingRaw(io.RawIOBase):
    """Passes ``src`` through unchanged, hashing it; at EOF the hash must equal ``digest``."""

    def __init__(self, src: _Closable, digest: str, where: str) -> None:
        self._src = src
        self._digest = digest
        self._where = where
        self._sha = hashlib.sha256()
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        if not self._pending and not self._eof:
            chunk = self._src.read(max(len(view), 1))
            if chunk:
                self._sha.update(chunk)
                self._pending = chunk
            else:
                self._eof = True
        if not self._pending:
            # Checked on every read at EOF, so a caller that swallows the error once
            # still cannot mistake damaged bytes for a clean end.
            self._check()
            return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _check(self) -> None:
        actual = self._sha.hexdigest()
        if actual != self._digest:
            raise IntegrityError(
                f"blob {self._digest} at {self._where} is damaged: its bytes hash to {actual}",
                hint="the stored copy is corrupt; upload the artifact again",
            )

    def close(self) -> None:
        if not self.closed:
            try:
                self._src.close()
            finally:
                super().close()


def open_verified(src: _Closable, digest: str, where: str) -> BinaryIO:
    """``src`` as a buffered binary stream that raises IntegrityError naming ``digest`` and
    ``where`` when, at EOF, the bytes read do not hash to ``digest``. Closing it closes ``src``.

    Bytes are handed out before they are verified: a consumer that must never act on bad
    data writes them somewhere provisional and commits only after reading to the end.
    """
    return io.BufferedReader(_VerifyingRaw(src, digest, where), CHUNK_BYTES)


def copy_hashing(src: Readable, dst: BinaryIO) -> BlobRef:
    """Copy ``src`` to ``dst`` chunk by chunk; the ref of the bytes copied."""
    sha = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK_BYTES):
        sha.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return BlobRef(sha.hexdigest(), size)


@contextmanager
def spooled(src: Readable, directory: str | Path | None = None) -> Iterator[tuple[Path, BlobRef]]:
    """Spool ``src`` to a temporary file (in ``directory``), hashing it on the way.

    Yields the file's path and its ref; the file is removed on exit.

    >>> with spooled(io.BytesIO(b"abc")) as (path, ref):
    ...     ref.size
    3
    """
    fd, name = tempfile.mkstemp(prefix=".gyre-spool-", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            ref = copy_hashing(src, out)
        yield path, ref
    finally:
        path.unlink(missing_ok=True)
