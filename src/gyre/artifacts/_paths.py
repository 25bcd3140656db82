"""Checks for the names the artifact seam accepts: logical paths, scopes and digests.

Logical paths and scopes are POSIX relative paths that can never climb out of where they are
written (no ``..``, nothing absolute), so any backend may map them onto a file system.
"""

from __future__ import annotations

import re

from gyre.errors import InvalidArgument

__all__ = ["validate_artifact_path", "validate_digest", "validate_scope"]

_DIGEST = re.compile(r"[0-9a-f]{64}")
# "C:" or "c:" at the start would make a relative-looking path absolute on Windows.
_DRIVE = re.compile(r"[A-Za-z]:")


def _normalise(path: object, what: str, example: str) -> str:
    if not isinstance(path, str):
        raise InvalidArgument(
            f"{what} must be a string, got {path!r}", hint=f"use a relative POSIX path: {example}"
        )
    hint = f"use a relative POSIX path such as {example!r}"
    if "\x00" in path:
        raise InvalidArgument(f"{what} {path!r} contains a NUL character", hint=hint)
    if "\\" in path:
        raise InvalidArgument(
            f"{what} {path!r} contains a backslash", hint=f"separate folders with '/': {hint}"
        )
    if path.startswith("/") or _DRIVE.match(path):
        raise InvalidArgument(f"{what} {path!r} is absolute", hint=hint)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"{what} {path!r} contains '..'", hint=hint)
    if not parts:
        raise InvalidArgument(f"{what} {path!r} is empty", hint=hint)
    return "/".join(parts)


def validate_artifact_path(path: str) -> str:
    """``path`` as a normalised POSIX relative path, or InvalidArgument naming it.

    Refused: ``..`` components, absolute paths, empty paths, backslashes and NUL.

    >>> validate_artifact_path("model//./weights.bin")
    'model/weights.bin'
    """
    return _normalise(path, "artifact path", "model/weights.bin")


def validate_scope(scope: str) -> str:
    """A manifest scope (``runs/<run_id>``), checked like an artifact path."""
    return _normalise(scope, "artifact scope", "runs/<run_id>")


def validate_digest(digest: str) -> str:
    """``digest`` if it is a lowercase hex sha256, else InvalidArgument naming it."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(
            f"{digest!r} is not a blob digest", hint="a digest is 64 lowercase hex characters"
        )
    return digest
