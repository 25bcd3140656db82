"""JSON in and out of the hot path: orjson when installed, the standard library otherwise.

orjson parses and writes several times faster and writes numeric numpy arrays directly
(no ``tolist``); both paths write NaN and infinities as ``null``, since JSON has no such
numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["JSONDecodeError", "dumps", "jsonable", "loads"]

JSONDecodeError = json.JSONDecodeError


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):  # pandas Timestamp and friends
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


try:
    import orjson

    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY

    def dumps(obj: Any) -> bytes:
        """``obj`` as compact UTF-8 JSON."""
        return orjson.dumps(obj, default=_default, option=_OPTIONS)

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError (JSONDecodeError with the stdlib) when malformed."""
        return orjson.loads(data)

    _NUMPY_NATIVE = True

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working

    def _finite(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: _finite(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [_finite(v) for v in obj]
        if isinstance(obj, np.ndarray | np.generic):
            return _finite(_default(obj))
        return obj

    def dumps(obj: Any) -> bytes:
        """``obj`` as compact UTF-8 JSON."""
        return json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises ValueError (JSONDecodeError with the stdlib) when malformed."""
        return json.loads(data)

    _NUMPY_NATIVE = False


def jsonable(arr: np.ndarray[Any, Any]) -> Any:
    """``arr`` in the cheapest form :func:`dumps` writes: itself when numeric, else a list."""
    if _NUMPY_NATIVE and arr.dtype.kind in "biuf" and arr.dtype.itemsize <= 8:
        return np.ascontiguousarray(arr)
    return arr.tolist()
