"""Where the prediction log lives in an artifact store: scopes, segment paths and the index.

Manifest scopes (``<m>`` is the model name, escaped so it is one safe path component)::

    predictions/<m>/<version>/<YYYY-MM-DD>   one entry per segment: <spool id>.parquet
    feedback/<m>/<YYYY-MM-DD>                 the same, for ground-truth labels
    predictions/<m>/_index                    one entry per <version>/<YYYY-MM> holding data
    feedback/<m>/_index                       one entry per <YYYY-MM> holding labels
    predictions/_models, feedback/_models     one entry per model

The artifact seam has no way to list scopes, so the two index levels say which ones exist.
Index entries carry no data (they point at the empty blob); their paths are the data. They
are written after the segments they announce, so an index never promises a partition whose
segments are missing; a crash in between is repaired by the re-run that follows. Escaped
model names never start with ``_``, so the index scopes cannot collide with a model.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from urllib.parse import unquote

from gyre.artifacts import ArtifactStore, BlobRef
from gyre.errors import InvalidArgument

__all__ = [
    "EMPTY_BLOB",
    "Kind",
    "Partition",
    "day_of_ms",
    "ensure_empty_blob",
    "index_scope",
    "model_key",
    "model_name",
    "models_in",
    "models_scope",
    "partitions_in",
    "record_partitions",
    "segment_path",
    "versions_in",
]

Kind = Literal["predictions", "feedback"]
KINDS: tuple[Kind, ...] = ("predictions", "feedback")

EMPTY_BLOB = BlobRef(hashlib.sha256(b"").hexdigest(), 0)

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MONTH = re.compile(r"\d{4}-\d{2}")
_VERSION_MONTH = re.compile(r"(\d+)/(\d{4}-\d{2})")


def model_key(model: str) -> str:
    """``model`` as one path component: letters, digits, ``.``, ``_`` and ``-`` kept, the
    rest (and a leading ``.`` or ``_``) percent-escaped, so no name can climb out of its
    folder or look like an index scope.

    >>> model_key("churn_v2"), model_key("team/churn v2"), model_key("..")
    ('churn_v2', 'team%2Fchurn%20v2', '%2E.')
    """
    if not isinstance(model, str) or not model:
        raise InvalidArgument(f"model name {model!r} is empty or not a string")
    out = []
    for i, ch in enumerate(model):
        if ch in _SAFE and not (i == 0 and ch in "._"):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out)


def model_name(key: str) -> str:
    """The model name :func:`model_key` escaped."""
    return unquote(key, errors="strict")


def models_scope(kind: Kind) -> str:
    return f"{kind}/_models"


def index_scope(kind: Kind, model: str) -> str:
    return f"{kind}/{model_key(model)}/_index"


def segment_path(spool_id: str) -> str:
    """The manifest path of the segment made from spool file ``spool_id``: the same on
    every re-run, so a repeated compaction replaces its entry instead of adding rows."""
    return f"{spool_id}.parquet"


def day_of_ms(timestamp_ms: int) -> date:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).date()


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """The records of one model (and version, for predictions) on one UTC day."""

    kind: Kind
    model: str
    version: int | None
    day: date

    @property
    def scope(self) -> str:
        key = model_key(self.model)
        if self.kind == "predictions":
            return f"predictions/{key}/{self.version}/{self.day.isoformat()}"
        return f"feedback/{key}/{self.day.isoformat()}"

    @property
    def index_entry(self) -> str:
        month = self.day.isoformat()[:7]
        return month if self.kind == "feedback" else f"{self.version}/{month}"


def ensure_empty_blob(store: ArtifactStore) -> None:
    """Store the empty blob index entries point at, unless it is there already."""
    if not store.has_blob(EMPTY_BLOB.digest):
        store.put_blob(io.BytesIO(b""))


def record_partitions(
    store: ArtifactStore, partitions: Iterable[Partition], known: set[tuple[str, str]]
) -> None:
    """Add the partitions missing from their model's index, then the missing models.

    ``known``: ``(scope, entry)`` pairs already recorded in ``store``, kept by the caller
    between calls so that steady-state compactions read no index at all; updated here."""
    wanted: dict[str, set[str]] = {}
    for p in partitions:
        wanted.setdefault(index_scope(p.kind, p.model), set()).add(p.index_entry)
        wanted.setdefault(models_scope(p.kind), set()).add(model_key(p.model))
    # Index entries before model entries: nothing is announced before what it points to.
    order = sorted(wanted, key=lambda scope: (scope.endswith("/_models"), scope))
    blob_checked = False
    for scope in order:
        entries = {e for e in wanted[scope] if (scope, e) not in known}
        if not entries:
            continue
        missing = entries - store.read_manifest(scope).keys()
        if missing:
            if not blob_checked:
                ensure_empty_blob(store)
                blob_checked = True
            store.append_manifest(scope, dict.fromkeys(sorted(missing), EMPTY_BLOB))
        known.update((scope, e) for e in entries)


def models_in(store: ArtifactStore, kind: Kind) -> list[str]:
    """Every model with data of ``kind`` in ``store``, by name."""
    return sorted(model_name(k) for k in store.read_manifest(models_scope(kind)))


def versions_in(store: ArtifactStore, model: str) -> list[int]:
    """The versions of ``model`` with predictions in ``store``, ascending."""
    versions: set[int] = set()
    for entry in store.read_manifest(index_scope("predictions", model)):
        parsed = _parse_index_entry("predictions", entry)
        if parsed is not None and parsed[0] is not None:
            versions.add(parsed[0])
    return sorted(versions)


def partitions_in(
    store: ArtifactStore,
    kind: Kind,
    model: str,
    *,
    version: int | None = None,
    first: date | None = None,
    last: date | None = None,
) -> list[Partition]:
    """The partitions of ``model`` the index announces, day by day within ``first..last``
    (both inclusive, None for open-ended); the days of an announced month may be empty."""
    found: list[Partition] = []
    for entry in store.read_manifest(index_scope(kind, model)):
        parsed = _parse_index_entry(kind, entry)
        if parsed is None:
            continue
        entry_version, month = parsed
        if version is not None and entry_version != version:
            continue
        for day in _days_of_month(month):
            if (first is None or day >= first) and (last is None or day <= last):
                found.append(Partition(kind, model, entry_version, day))
    return sorted(found)


def _parse_index_entry(kind: Kind, entry: str) -> tuple[int | None, str] | None:
    if kind == "feedback":
        return (None, entry) if _MONTH.fullmatch(entry) else None
    m = _VERSION_MONTH.fullmatch(entry)
    return (int(m.group(1)), m.group(2)) if m else None


def _days_of_month(month: str) -> Iterator[date]:
    day = date.fromisoformat(f"{month}-01")
    while day.isoformat()[:7] == month:
        yield day
        day += timedelta(days=1)
