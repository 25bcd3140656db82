"""Warnings a model package raises: both are ``UserWarning``s, so ``-W error`` catches them."""

from __future__ import annotations

__all__ = ["LibraryVersionWarning", "UnsafeSerializationWarning"]


class LibraryVersionWarning(UserWarning):
    """An installed library differs from the version the model was saved with."""


class UnsafeSerializationWarning(UserWarning):
    """A model is written or read with pickle, which can run arbitrary code on load."""
