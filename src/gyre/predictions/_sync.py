"""Edge sync: copy the prediction log of a local artifact store into a central one.

For every scope of the log (found through the index, see ``_layout``), the entries the
central manifest lacks (or records with another blob) are copied: each blob first
(``has_blob``, then ``put_blob`` streaming from the local store), then the entries, in one
``append_manifest`` per scope under the same paths. Segment scopes go before the index
entries that announce them, so central never announces what it does not hold.

Idempotent: an entry is appended only once its blob is in central, and appending an entry
central already holds changes nothing (same path, same blob). A sync cut short anywhere
is finished by the next one, without a duplicated or lost row. Nothing local is ever
changed or deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gyre.artifacts import ArtifactStore, BlobRef
from gyre.errors import BackendUnavailable, Forbidden, IntegrityError, InvalidArgument, Unauthorized
from gyre.predictions._layout import (
    KINDS,
    Kind,
    index_scope,
    models_in,
    models_scope,
    partitions_in,
)

__all__ = ["SyncReport", "sync"]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync copied: ``scopes`` that gained entries, the ``entries`` appended,
    the ``blobs`` uploaded and their ``bytes``; ``models`` looked at."""

    scopes: int
    entries: int
    blobs: int
    bytes: int
    models: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "scopes": self.scopes,
            "entries": self.entries,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "models": list(self.models),
        }


def sync(
    local: ArtifactStore,
    central: ArtifactStore,
    *,
    scopes_prefix: str | Sequence[str] = ("predictions/", "feedback/"),
) -> SyncReport:
    """Copy what ``central`` lacks of the prediction log in ``local`` (predictions and
    feedback by default; ``scopes_prefix="predictions/"`` for predictions only).

    BackendUnavailable naming ``central`` when it cannot be reached; everything local is
    left as it was, and the next sync carries on where this one stopped.

    >>> sync(open_artifact_store("/var/lib/gyre/artifacts"),
    ...      open_artifact_store("https://gyre.internal"))  # doctest: +SKIP
    SyncReport(scopes=3, entries=5, blobs=5, bytes=81234, models=('churn',))
    """
    kinds = _kinds(scopes_prefix)
    copier = _Copier(local, central)
    models: set[str] = set()
    try:
        # Asked even when there is nothing to copy: a sync that reports success must have
        # reached central (a wrong URL or token is found on the first sync, not the first
        # one with something to send).
        central.read_manifest(models_scope(kinds[0]))
        for kind in kinds:
            names = models_in(local, kind)
            models.update(names)
            for model in names:
                for partition in partitions_in(local, kind, model):
                    copier.copy(partition.scope)
                copier.copy(index_scope(kind, model))
            copier.copy(models_scope(kind))
    except BackendUnavailable as exc:
        raise BackendUnavailable(
            f"cannot sync the prediction log to {central.uri!r}: {exc.message}",
            hint="everything stays in the local store; the next sync copies what this one did not",
        ) from None
    except (Unauthorized, Forbidden) as exc:
        raise type(exc)(
            f"{central.uri!r} refused the prediction log's sync: {exc.message}",
            hint="set GYRE_TOKEN to a token of that server with the 'write' scope "
            "(gyre tokens create NAME --scope write, run there)",
        ) from None
    return SyncReport(
        copier.scopes, copier.entries, copier.blobs, copier.bytes, tuple(sorted(models))
    )


def _kinds(prefixes: str | Sequence[str]) -> list[Kind]:
    wanted = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    kinds: list[Kind] = []
    for prefix in wanted:
        kind = next((k for k in KINDS if prefix.rstrip("/") == k), None)
        if kind is None:
            raise InvalidArgument(
                f"scopes_prefix {prefix!r} is not part of the prediction log",
                hint="use 'predictions/', 'feedback/' or both",
            )
        if kind not in kinds:
            kinds.append(kind)
    return kinds


class _Copier:
    def __init__(self, local: ArtifactStore, central: ArtifactStore) -> None:
        self.local = local
        self.central = central
        self.scopes = self.entries = self.blobs = self.bytes = 0
        self._present: set[str] = set()  # digests known to be in central

    def copy(self, scope: str) -> None:
        mine = self.local.read_manifest(scope)
        if not mine:
            return
        theirs = self.central.read_manifest(scope)
        missing = {path: ref for path, ref in mine.items() if theirs.get(path) != ref}
        if not missing:
            return
        for ref in {ref.digest: ref for ref in missing.values()}.values():
            self._ensure_blob(ref)
        self.central.append_manifest(scope, missing)
        self.scopes += 1
        self.entries += len(missing)

    def _ensure_blob(self, ref: BlobRef) -> None:
        if ref.digest in self._present or self.central.has_blob(ref.digest):
            self._present.add(ref.digest)
            return
        with self.local.open_blob(ref.digest) as src:
            stored = self.central.put_blob(src)
        if stored != ref:
            raise IntegrityError(
                f"central stored blob {stored.digest} ({stored.size} bytes) for local blob "
                f"{ref.digest} ({ref.size} bytes)",
                hint="the upload was damaged in transit; sync again",
            )
        self._present.add(ref.digest)
        self.blobs += 1
        self.bytes += ref.size
