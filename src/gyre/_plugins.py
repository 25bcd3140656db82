"""Entry-point lookup: built-ins register through the same groups a third party would use.

Groups: ``gyre.metadata_stores`` and ``gyre.artifact_stores`` (keyed by URI scheme).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from gyre.errors import InvalidArgument

__all__ = ["load", "names"]


@cache
def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_group(group))


def load(group: str, name: str, *, what: str, value: str) -> Any:
    """The object registered as ``name`` in ``group``; ``what``/``value`` word the error."""
    ep = _group(group).get(name)
    if ep is None:
        raise InvalidArgument(
            f"{what} {value!r} has scheme {name!r}, which no installed plugin provides",
            hint=f"use one of: {', '.join(names(group)) or '(none installed)'}",
        )
    return ep.load()
