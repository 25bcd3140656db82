"""Manifest fragments, shared by the backends that store them as files or objects.

Each ``append_manifest`` writes one new fragment named ``<time_ns>-<uuid>.json``; nothing is
ever rewritten, so concurrent writers cannot lose each other's entries. Reading merges the
fragments in name order, i.e. in time order, so a later entry for a path wins.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from gyre.artifacts._paths import validate_artifact_path, validate_digest
from gyre.artifacts._protocol import BlobRef
from gyre.errors import IntegrityError, InvalidArgument

__all__ = ["FRAGMENT_NAME", "check_entries", "decode", "encode", "merge", "new_fragment_name"]

FORMAT = 1
FRAGMENT_NAME = re.compile(r"\d{20}-[0-9a-f]{32}\.json")

_stamp_lock = threading.Lock()
_last_stamp = 0


def new_fragment_name() -> str:
    """A fragment name that sorts after every name this process made before it."""
    global _last_stamp
    with _stamp_lock:
        # The wall clock can step back (NTP); appends from one process must still sort in
        # the order they were made, or "later entry wins" would break.
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:020d}-{uuid.uuid4().hex}.json"


def check_entries(entries: Mapping[str, BlobRef]) -> dict[str, BlobRef]:
    """``entries`` with normalised paths; InvalidArgument naming a bad path or ref."""
    checked: dict[str, BlobRef] = {}
    for path, ref in entries.items():
        key = validate_artifact_path(path)
        if not isinstance(ref, BlobRef):
            raise InvalidArgument(
                f"entry {path!r} maps to {ref!r}, not a BlobRef",
                hint="record the BlobRef that put_blob returned",
            )
        validate_digest(ref.digest)
        if isinstance(ref.size, bool) or not isinstance(ref.size, int) or ref.size < 0:
            raise InvalidArgument(f"entry {path!r} has size {ref.size!r}, not a count of bytes")
        checked[key] = ref
    return checked


def encode(entries: Mapping[str, BlobRef]) -> bytes:
    body = {
        "format": FORMAT,
        "entries": {p: {"digest": r.digest, "size": r.size} for p, r in entries.items()},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes, where: str) -> dict[str, BlobRef]:
    """The entries of one fragment; IntegrityError naming ``where`` if it is not one."""
    try:
        body: Any = json.loads(data)
        if body.get("format") != FORMAT:
            raise ValueError(f"unknown format {body.get('format')!r}")
        return check_entries(
            {str(p): BlobRef(r["digest"], r["size"]) for p, r in body["entries"].items()}
        )
    # ValueError covers bad JSON and InvalidArgument (a bad path or digest) alike.
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise IntegrityError(
            f"manifest fragment {where} is damaged: {exc}",
            hint="remove or repair the fragment; it is not a gyre manifest",
        ) from None


def merge(fragments: Iterable[Mapping[str, BlobRef]]) -> dict[str, BlobRef]:
    """Fragments folded in the order given: a later entry for a path wins."""
    merged: dict[str, BlobRef] = {}
    for fragment in fragments:
        merged.update(fragment)
    return merged
