"""The artifact-store contract: what every ArtifactStore must do, as plain checks.

Run them all with :func:`check_artifact_store`, or one by one (``ARTIFACT_STORE_CHECKS``)
to see which fails. Each check writes fresh random bytes and uniquely named scopes, so a
store that already holds data (a shared bucket) is fine.

Not covered here, because it needs access behind the protocol: that damaged stored bytes
are detected on read. Test that per backend by flipping a byte where it keeps the blob.

>>> from gyre.testing import check_artifact_store
>>> check_artifact_store(LocalArtifactStore("/tmp/artifacts"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, BinaryIO, cast

from gyre.artifacts._protocol import ArtifactStore, BlobRef
from gyre.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["ARTIFACT_STORE_CHECKS", "check_artifact_store"]

_MiB = 1024 * 1024
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _expect(exc_type: type[BaseException], fn: Callable[[], object], *needles: str) -> None:
    try:
        fn()
    except exc_type as exc:
        text = str(exc)
        for needle in needles:
            assert needle in text, f"{exc_type.__name__} message {text!r} should name {needle!r}"
        return
    raise AssertionError(f"expected {exc_type.__name__} naming {', '.join(map(repr, needles))}")


def _fresh(size: int) -> bytes:
    """``size`` bytes no store has seen before."""
    tag = uuid.uuid4().bytes
    return (tag + os.urandom(max(size - len(tag), 0)))[:size]


def _scope(name: str) -> str:
    return f"conformance/{name}-{uuid.uuid4().hex[:12]}"


def _ref(data: bytes) -> BlobRef:
    return BlobRef(hashlib.sha256(data).hexdigest(), len(data))


class _Trickle(io.RawIOBase):
    """A non-seekable source that hands out at most ``step`` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int = 1000) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self._step, len(self._data))
        view[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


def _read_all(store: ArtifactStore, digest: str, *sizes: int) -> bytes:
    """The blob read with ``read(n)`` for each of ``sizes``, then ``read()`` to the end."""
    with store.open_blob(digest) as stream:
        parts = [stream.read(n) for n in sizes]
        parts.append(stream.read())
        assert stream.read() == b"", "a stream at its end keeps returning b''"
    return b"".join(parts)


def check_blob_round_trip(store: ArtifactStore) -> None:
    assert isinstance(store.uri, str) and store.uri, "a store has a non-empty uri"
    for size in (1, 1000, _MiB + 1, 2 * _MiB + 12345):
        data = _fresh(size)
        assert not store.has_blob(_ref(data).digest)
        ref = store.put_blob(io.BytesIO(data))
        assert ref == _ref(data), f"put_blob of {size} bytes returned {ref}, not {_ref(data)}"
        assert store.has_blob(ref.digest)
        got = _read_all(store, ref.digest, 7, 65536, _MiB)
        assert got == data, f"the {size} bytes read back differ from those stored"


def check_blob_dedup(store: ArtifactStore) -> None:
    data = _fresh(300_000)
    first = store.put_blob(io.BytesIO(data))
    again = store.put_blob(io.BytesIO(data))
    trickled = store.put_blob(cast(BinaryIO, _Trickle(data)))
    assert first == again == trickled == _ref(data), "identical bytes get one and the same ref"
    other = store.put_blob(io.BytesIO(data + b"!"))
    assert other != first, "different bytes get a different ref"
    assert _read_all(store, first.digest) == data


def check_empty_blob(store: ArtifactStore) -> None:
    ref = store.put_blob(io.BytesIO(b""))
    assert ref == BlobRef(_EMPTY_SHA256, 0), f"the empty blob's ref is {ref}"
    assert store.has_blob(_EMPTY_SHA256)
    assert _read_all(store, _EMPTY_SHA256, 10) == b""


def check_unknown_blob(store: ArtifactStore) -> None:
    missing = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    assert not store.has_blob(missing)
    _expect(NotFound, lambda: store.open_blob(missing), missing)
    _expect(InvalidArgument, lambda: store.open_blob("not-a-digest"), "not-a-digest")


def check_partial_read(store: ArtifactStore) -> None:
    data = _fresh(3 * _MiB)
    ref = store.put_blob(io.BytesIO(data))
    # Stopping early is allowed and must not raise: only a read to the end can verify.
    with store.open_blob(ref.digest) as stream:
        assert stream.read(10) == data[:10]


def check_manifest_merge(store: ArtifactStore) -> None:
    scope = _scope("merge")
    assert store.read_manifest(scope) == {}, "an unknown scope has an empty manifest"
    r1, r2, r3 = (store.put_blob(io.BytesIO(_fresh(64))) for _ in range(3))
    store.append_manifest(scope, {"model/weights.bin": r1, "README.md": r2})
    assert store.read_manifest(scope) == {"model/weights.bin": r1, "README.md": r2}
    store.append_manifest(scope, {"model/weights.bin": r3})
    merged = store.read_manifest(scope)
    assert merged == {"model/weights.bin": r3, "README.md": r2}, f"later entry wins: {merged}"
    store.append_manifest(scope, {})
    assert store.read_manifest(scope) == merged, "appending nothing changes nothing"

    # Scopes are separate, even when one's name starts with another's.
    assert store.read_manifest(scope + "x") == {}
    store.append_manifest(f"{scope}/nested", {"other.txt": r1})
    assert store.read_manifest(scope) == merged, "a nested scope is a different scope"
    assert store.read_manifest(f"{scope}/nested") == {"other.txt": r1}


def check_manifest_concurrent_appends(store: ArtifactStore) -> None:
    scope = _scope("concurrent")
    refs = [store.put_blob(io.BytesIO(_fresh(32))) for _ in range(8)]
    start = threading.Barrier(len(refs))

    def append(i: int) -> None:
        start.wait(timeout=30)
        store.append_manifest(scope, {f"thread-{i}/part.bin": refs[i]})

    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        for future in [pool.submit(append, i) for i in range(len(refs))]:
            future.result()
    merged = store.read_manifest(scope)
    expected = {f"thread-{i}/part.bin": ref for i, ref in enumerate(refs)}
    assert merged == expected, f"concurrent appends lost entries: kept {sorted(merged)}"


def check_manifest_refuses_bad_paths(store: ArtifactStore) -> None:
    scope = _scope("refuse")
    ref = store.put_blob(io.BytesIO(b"x"))
    for bad in ("../escape.txt", "a/../../escape.txt", "/etc/passwd", ""):
        _expect(InvalidArgument, partial(store.append_manifest, scope, {bad: ref}), bad)
    _expect(InvalidArgument, lambda: store.append_manifest("../outside", {"a": ref}), "../outside")
    assert store.read_manifest(scope) == {}, "a refused append records nothing"


ARTIFACT_STORE_CHECKS: list[Callable[[ArtifactStore], None]] = [
    check_blob_round_trip,
    check_blob_dedup,
    check_empty_blob,
    check_unknown_blob,
    check_partial_read,
    check_manifest_merge,
    check_manifest_concurrent_appends,
    check_manifest_refuses_bad_paths,
]


def check_artifact_store(store: ArtifactStore) -> None:
    """Run every check in ``ARTIFACT_STORE_CHECKS`` against ``store``.

    Raises AssertionError (or the store's own error) at the first check that fails.

    >>> check_artifact_store(open_artifact_store("/tmp/artifacts"))  # doctest: +SKIP
    """
    for check in ARTIFACT_STORE_CHECKS:
        try:
            check(store)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__} failed for {store!r}: {exc}") from exc
