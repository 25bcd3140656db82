"""Every input shape a model accepts, turned into named numpy columns or one array.

DataFrames, Series, dicts of columns, dicts of scalars (one row) and lists of records
become a :class:`Table`; ndarrays and nested lists stay arrays. This is the one place
that tells input shapes apart; signatures, profiles and example files build on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.errors import InvalidArgument

__all__ = [
    "Table",
    "as_array",
    "as_table",
    "describe_value",
    "is_dataframe",
    "is_missing",
    "missing_mask",
]


@dataclass(slots=True)
class Table:
    """Equal-length 1-D columns, in order."""

    columns: dict[str, NDArray[Any]]
    n_rows: int


def is_dataframe(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def _is_series(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "Series" and cls.__module__.startswith("pandas")


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas.NA (without importing pandas)."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return type(value).__name__ in ("NAType", "NaTType")


def missing_mask(arr: NDArray[Any]) -> NDArray[np.bool_]:
    kind = arr.dtype.kind
    if kind in "fc":
        return np.asarray(np.isnan(arr), dtype=bool)
    if kind in "mM":
        return np.asarray(np.isnat(arr), dtype=bool)
    if kind == "O":
        return np.fromiter((is_missing(v) for v in arr.ravel()), bool, arr.size).reshape(arr.shape)
    return np.zeros(arr.shape, dtype=bool)


def describe_value(value: Any) -> str:
    """``string 'abc'``, ``float 2.5``, ``bool True``: a value and its type, for messages."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _column(values: Any, name: str) -> NDArray[Any]:
    if isinstance(values, np.ndarray):
        arr = values
    elif _is_series(values):
        arr = values.to_numpy()
    elif isinstance(values, list | tuple):
        # object keeps each element's own type: np.asarray([1, "abc"]) would make both strings
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidArgument(
            f"column {name!r} has shape {arr.shape}; columns must be 1-dimensional",
            hint="pass multi-dimensional inputs as a dict of arrays with a tensor signature",
        )
    return arr


def _table_from_columns(columns: dict[str, NDArray[Any]]) -> Table:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidArgument(
            f"columns have different lengths: {lengths}", hint="give every column one value per row"
        )
    return Table(columns, next(iter(lengths.values()), 0))


def as_table(data: Any) -> Table | None:
    """``data`` as a Table, or None when it is array-like (ndarray, nested lists)."""
    if is_dataframe(data):
        return _table_from_columns(
            {str(name): _column(data[name], str(name)) for name in data.columns}
        )
    if _is_series(data):
        name = "0" if data.name is None else str(data.name)
        return _table_from_columns({name: _column(data, name)})
    if isinstance(data, Mapping):
        if data and all(np.ndim(v) == 0 and not isinstance(v, list) for v in data.values()):
            return _table_from_columns({str(k): _column([v], str(k)) for k, v in data.items()})
        if any(np.ndim(v) > 1 for v in data.values()):
            return None  # a dict of tensors
        return _table_from_columns({str(k): _column(v, str(k)) for k, v in data.items()})
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        names: dict[str, None] = {}
        for record in data:
            names.update(dict.fromkeys(map(str, record)))
        return _table_from_columns(
            {n: _column([r.get(n) for r in data], n) for n in names}  # absent key → None
        )
    return None


def as_array(data: Any) -> NDArray[Any]:
    """Array-like ``data`` as an ndarray; nested lists keep each element's type."""
    if isinstance(data, np.ndarray):
        return data
    if is_dataframe(data):
        return np.asarray(data.to_numpy())
    arr = np.asarray(data)
    if arr.dtype.kind in "US" and isinstance(data, list | tuple):
        # [[1, "abc"]] would become all strings; object keeps the numbers numbers
        arr = np.asarray(data, dtype=object)
    return arr
